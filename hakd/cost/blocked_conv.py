"""Convolutions on channel-blocked activations (``NCHW{b}c``), as hakd computes them.

An activation of C channels in the blocked layout is ``(N, ceil(C/b), H, W, b)``: channel
``c`` sits at ``[n, c // b, h, w, c % b]``, the last block zero-padded, so one vector load
reads ``b`` channels of one pixel wherever the pixel is (ONNX Runtime's MLAS and TVM's old
x86 ``conv2d_NCHWc`` keep the same layout). ``b`` is the target's vector width in floats
(:attr:`hakd.cost.target.TargetSpec.channel_block`). Weights are constants, packed once:

- dense conv, blocked input: ``OIHW{b}i{b}o`` = ``(O/b, I/b, KH, KW, b, b)``;
- dense conv, plain NCHW input (the stem, fewer than ``b`` input channels): ``(O/b, I, KH, KW, b)``;
- depthwise conv: ``(C/b, KH, KW, b)``.

Padded channels have zero weights and zero bias, so they stay zero through ReLU, clip and
adds, and a consumer never reads them into a real channel. The block names are
``conv2d_NCHWc`` and ``depthwise_conv2d_NCHWc`` (with ``pad_temp``), which
:func:`hakd.cost.schedules.kernel_kind` recognises.

>>> from tvm import te
>>> x = te.placeholder((1, 2, 8, 8, 8), name="x")
>>> w = te.placeholder((3, 2, 3, 3, 8, 8), name="w")
>>> [int(d) for d in conv2d_nchwc(x, w, (1, 1), (1, 1, 1, 1), (1, 1)).shape]
[1, 3, 8, 8, 8]
"""

from __future__ import annotations

from tvm import te, topi

__all__ = ["conv2d_nchwc", "depthwise_nchwc"]


def _out_size(size: int, before: int, after: int, kernel: int, stride: int, dilation: int) -> int:
    return (size + before + after - (kernel - 1) * dilation - 1) // stride + 1


def _padded(data: te.Tensor, padding, blocked: bool) -> te.Tensor:
    top, left, bottom, right = (int(p) for p in padding)
    if not (top or left or bottom or right):
        return data
    rest = [0] if blocked else []
    return topi.nn.pad(data, [0, 0, top, left, *rest], [0, 0, bottom, right, *rest], name="pad_temp")


def conv2d_nchwc(data: te.Tensor, weight: te.Tensor, strides, padding, dilation) -> te.Tensor:
    """Dense conv, output ``(N, O/b, OH, OW, b)``. ``data`` is blocked (5-D, weight 6-D) or
    plain NCHW (4-D, weight 5-D: the stem)."""
    blocked = len(data.shape) == 5
    n, _, height, width = (int(d) for d in data.shape[:4])
    out_blocks, kh, kw, block = int(weight.shape[0]), int(weight.shape[2]), int(weight.shape[3]), int(weight.shape[-1])
    (sh, sw), (dh, dw), (top, left, bottom, right) = strides, dilation, padding
    out_h = _out_size(height, int(top), int(bottom), kh, int(sh), int(dh))
    out_w = _out_size(width, int(left), int(right), kw, int(sw), int(dw))
    padded = _padded(data, padding, blocked)
    ry, rx = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    if blocked:
        rco, rci = te.reduce_axis((0, int(data.shape[1])), "rco"), te.reduce_axis((0, int(data.shape[4])), "rci")
        return te.compute(
            (n, out_blocks, out_h, out_w, block),
            lambda b, o, y, x, oi: te.sum(
                padded[b, rco, y * sh + ry * dh, x * sw + rx * dw, rci] * weight[o, rco, ry, rx, rci, oi],
                axis=[rco, ry, rx, rci]),
            name="conv2d_NCHWc")
    rc = te.reduce_axis((0, int(data.shape[1])), "rc")
    return te.compute(
        (n, out_blocks, out_h, out_w, block),
        lambda b, o, y, x, oi: te.sum(padded[b, rc, y * sh + ry * dh, x * sw + rx * dw] * weight[o, rc, ry, rx, oi],
                                      axis=[rc, ry, rx]),
        name="conv2d_NCHWc")


def depthwise_nchwc(data: te.Tensor, weight: te.Tensor, strides, padding, dilation) -> te.Tensor:
    """Depthwise conv of a blocked ``(N, C/b, H, W, b)`` input with ``(C/b, KH, KW, b)`` weights."""
    n, blocks, height, width, block = (int(d) for d in data.shape)
    kh, kw = int(weight.shape[1]), int(weight.shape[2])
    (sh, sw), (dh, dw), (top, left, bottom, right) = strides, dilation, padding
    out_h = _out_size(height, int(top), int(bottom), kh, int(sh), int(dh))
    out_w = _out_size(width, int(left), int(right), kw, int(sw), int(dw))
    padded = _padded(data, padding, True)
    ry, rx = te.reduce_axis((0, kh), "ry"), te.reduce_axis((0, kw), "rx")
    return te.compute(
        (n, blocks, out_h, out_w, block),
        lambda b, c, y, x, ci: te.sum(padded[b, c, y * sh + ry * dh, x * sw + rx * dw, ci] * weight[c, ry, rx, ci],
                                      axis=[ry, rx]),
        name="depthwise_conv2d_NCHWc")
