"""How hakd computes a dense convolution: NCHW activations, weights packed by output-channel blocks.

A conv's weights are constants of the deployed model, so their layout is free: hakd packs
``OIHW`` into ``(O/16)IHW16o`` (zero rows pad the last block), a layout transform that
depends on weights alone (:func:`hakd.cost.lower.lower` leaves it out of the measured
kernels; ``FoldConstant`` runs it at compile time when the weights are bound). The conv
kernel then reads 16 consecutive output channels' weights as one vector, which lets the
``blocked`` template of :mod:`hakd.cost.schedules` vectorise over output channels, whatever
the spatial size (an 8x8 or 4x4 map gives short vectors along the width). The block of 16
serves every target: LLVM splits it into the target's vectors (2 on AVX2, 4 on NEON).
Activations stay NCHW, so kernels chain with no layout transform between them.

The compute keeps the block names of TVM's own conv (``pad_temp``, ``conv2d_nchw``), so
every template fits it::

    mod = LegalizeOps(customize_legalize_map=LEGALIZE)(mod)
"""

from __future__ import annotations

import functools

from tvm import relax, te, tirx, topi

__all__ = ["PACK", "pack_weight", "packed_conv2d", "LEGALIZE"]

PACK = 16  # output channels per weight block


def pack_weight(weight: te.Tensor) -> te.Tensor:
    """OIHW -> (ceil(O/16), I, H, W, 16), zero past O."""
    out_channels = int(weight.shape[0])
    blocks = -(-out_channels // PACK)

    def value(b, i, h, w, o):
        channel = b * PACK + o
        return tirx.if_then_else(channel < out_channels, weight[tirx.min(channel, out_channels - 1), i, h, w], tirx.const(0.0, weight.dtype))

    return te.compute((blocks, *weight.shape[1:], PACK), value, name="weight_pack")


def packed_conv2d(data: te.Tensor, packed: te.Tensor, out_channels: int, strides, padding, dilation) -> te.Tensor:
    """NCHW conv of ``data`` with weights from :func:`pack_weight` (``out_channels`` of them)."""
    _, in_channels, height, width = (int(d) for d in data.shape)
    kh, kw = int(packed.shape[2]), int(packed.shape[3])
    top, left, bottom, right = (int(p) for p in padding)
    sh, sw = (int(s) for s in strides)
    dh, dw = (int(d) for d in dilation)
    out_h = (height + top + bottom - (kh - 1) * dh - 1) // sh + 1
    out_w = (width + left + right - (kw - 1) * dw - 1) // sw + 1
    padded = topi.nn.pad(data, [0, 0, top, left], [0, 0, bottom, right], name="pad_temp") if top or left or bottom or right else data
    rc = te.reduce_axis((0, in_channels), "rc")
    ry = te.reduce_axis((0, kh), "ry")
    rx = te.reduce_axis((0, kw), "rx")
    return te.compute(
        (int(data.shape[0]), out_channels, out_h, out_w),
        lambda n, o, y, x: te.sum(padded[n, rc, y * sh + ry * dh, x * sw + rx * dw] * packed[o // PACK, rc, ry, rx, o % PACK],
                                  axis=[rc, ry, rx]),
        name="conv2d_nchw")


def _legalize_conv2d(bb, call):
    """relax.nn.conv2d -> pack + packed conv, for float32 NCHW/OIHW convs of one group;
    anything else keeps TVM's own legalisation."""
    from tvm.relax.transform.legalize_ops.nn import _nn_conv2d

    attrs = call.attrs
    data, weight = call.args
    plain = (attrs.data_layout == "NCHW" and attrs.kernel_layout == "OIHW" and attrs.out_layout in ("NCHW", "")
             and int(attrs.groups) == 1 and data.ty.dtype == "float32" and weight.ty.dtype == "float32"
             and (attrs.out_dtype in ("", "float32")))
    if not plain:
        return _nn_conv2d(bb, call)
    pack_func, pack_ty, conv_func, conv_ty = _packed_funcs(
        tuple(int(d) for d in data.ty.shape), tuple(int(d) for d in weight.ty.shape), tuple(int(s) for s in attrs.strides),
        tuple(int(p) for p in attrs.padding), tuple(int(d) for d in attrs.dilation))
    packed = bb.emit(relax.call_tir(bb.add_func(pack_func, "weight_pack"), [weight], pack_ty))
    return relax.call_tir(bb.add_func(conv_func, "conv2d"), [data, packed], conv_ty)


@functools.lru_cache(maxsize=4096)
def _packed_funcs(data_shape, weight_shape, strides, padding, dilation):
    """(pack PrimFunc, its output type, conv PrimFunc, its output type) of a conv of these shapes:
    built once per process. A staircase lowers the same model at many widths, and building the
    same TE computes again for its unchanged convs was a third of each lowering."""
    from tvm.relax.utils import gen_call_tir_inputs

    tensor = lambda name, shape: relax.Var(name, relax.TensorType(shape, "float32"))  # noqa: E731
    weight = tensor("weight", weight_shape)
    pack_func, args, pack_ty = gen_call_tir_inputs(pack_weight, weight)
    assert list(args) == [weight]
    data, packed = tensor("data", data_shape), tensor("packed", tuple(int(d) for d in pack_ty[0].shape))
    conv_func, args, conv_ty = gen_call_tir_inputs(packed_conv2d, data, packed, weight_shape[0], strides, padding, dilation)
    assert list(args) == [data, packed]
    return pack_func, pack_ty, conv_func, conv_ty


LEGALIZE = {"relax.nn.conv2d": _legalize_conv2d}
