"""Winograd convolutions on channel-blocked activations: 3x3, stride 1, in ``F(m x m, 3 x 3)``.

A 3x3 conv computes each ``m x m`` tile of its output from the ``(m+2) x (m+2)`` tile of input
under it. Winograd's minimal filtering (Lavin and Gray 2016) does that with ``(m+2)^2``
multiplications per input and output channel instead of ``9 m^2``: the input tile is transformed
(``B^T d B``), multiplied elementwise by the transformed weights (``G g G^T``, constants of the
deployed model, folded at compile time like every weight pack), and transformed back
(``A^T M A``). Summed over input channels, the elementwise products are ``(m+2)^2`` independent
matrix products of (tiles x input channels) by (input channels x output channels): the work.
``F(4x4, 3x3)`` does 2.25 multiplications per output and input channel, ``F(2x2, 3x3)`` 4,
a direct conv 9. TVM's matrices (``topi.nn.winograd_util``, interpolation points
``0, +-1, +-1/2, ...``) keep float32 within ~1e-6 of a direct conv, relative to the outputs.

Activations are ``(N, C/b, H, W, b)`` as in :mod:`hakd.cost.blocked_conv`; every stage keeps
the ``b`` channels of a block in the last axis, one vector:

- ``winograd_rows``, ``winograd_data``: the input transform, ``B^T`` over rows then ``B`` over
  columns (separable: ``2 (m+2)^2 (m+2)`` terms per tile instead of ``(m+2)^4``), coefficients
  unrolled (zeros dropped, +-1 as adds);
- ``winograd_gemm``: ``(m+2)^2`` products ``(P, C) x (C, O)`` over the ``P`` tiles;
- ``winograd_cols``, ``winograd_out``: the output transform, then the fused epilogue.

Measured, warm, one thread, against hakd's best direct template for the same conv (Intel Xeon,
2026-12-04; AVX2 with AVX-512 hidden from LLVM): ResNet's 16->16 at 28x28, 32->32 at 14x14 and
64->64 at 7x7 took 0.39 / 0.46 / 0.30 of the direct time on AVX2 and 0.50 / 0.50 / 0.34 on
AVX-512; 64->64 at 4x4 0.30-0.32; 128->128 at 2x2 0.49-0.52. The transformed weights are
``(m+2)^2 / 9`` times the conv's weights, and where they outgrow the core's cache Winograd loses:
256->256 at 4x4 (4 MiB in ``F(2x2)``) took 1.13x the direct time on AVX-512 (0.69x on AVX2).
In a model the transformed weights come from L3, and there fewer multiplications do not always
pay: :func:`tile_size`.

>>> [tile_size(size, size, 64, 64, 16) for size in (28, 14, 7, 4)], tile_size(7, 7, 64, 64, 8), tile_size(4, 4, 256, 256, 16)
([4, 4, 2, 2], 4, 0)
"""

from __future__ import annotations

import functools
from typing import List, Sequence

from tvm import te, tirx, topi

__all__ = ["tile_size", "winograd_weight", "conv2d_winograd_nchwc"]


@functools.lru_cache(maxsize=None)
def _matrices(m: int):
    """(A, B, G) of ``F(m x m, 3 x 3)`` as nested tuples of floats."""
    from tvm.topi.nn.winograd_util import _cook_toom_convolution, _interpolation_points

    a, b, g = _cook_toom_convolution(_interpolation_points(m + 1), m, 3)
    return tuple(map(tuple, a.tolist())), tuple(map(tuple, b.tolist())), tuple(map(tuple, g.tolist()))


def tile_size(out_height: int, out_width: int, in_channels: int, out_channels: int, block: int) -> int:
    """``m`` of the ``F(m x m, 3 x 3)`` hakd computes a 3x3 stride-1 conv with on ``block``-channel
    vectors, 0 for a direct conv. ``F(4x4)`` multiplies least, but its transformed weights are 4x
    the conv's, and in a model they come from L3 (:mod:`hakd.cost.cache_context`): each is used
    once per tile, so it pays only with enough tiles per weight for the vector unit's speed, at
    least ``block / 2`` (AVX-512: maps of 9 or more; AVX2: 5 or more). ``F(2x2)`` otherwise, up to
    2 MiB of transformed weights on maps under 6 (256->256 at 4x4, 4 MiB, lost to a direct conv
    warm on AVX-512) and 8 MiB on larger ones (twice the largest measured, 256->256 at 8x8, won).

    In model context (ResNet-20, profiler, 2026-12-04), F(4x4) / F(2x2) / direct per 3x3 conv
    stage: AVX-512 28x28 110 / 156 / 148 us, 14x14 92 / 94 / 120, 7x7 125 / 102 / 126; 32x32
    156 / 216, 8x8 125 / 105; AVX2 (emulated) 28x28 124 / 151 / 225, 14x14 121 / 109 / 169, 7x7
    124 / 161 / 172."""
    weights = lambda m: (m + 2) ** 2 * in_channels * out_channels * 4  # noqa: E731
    tiles = lambda m: -(-out_height // m) * -(-out_width // m)  # noqa: E731
    large = min(out_height, out_width) >= 6
    if large and tiles(4) >= block / 2 and weights(4) <= 4 << 20:
        return 4
    return 2 if weights(2) <= (8 << 20 if large else 2 << 20) else 0


def _sum(terms) -> tirx.PrimExpr:
    """``sum(coefficient * value)`` with zero terms dropped and +-1 as an add or subtract."""
    out = None
    for coefficient, value in terms:
        if coefficient == 0:
            continue
        scaled = value if abs(coefficient) == 1 else value * tirx.const(abs(coefficient), "float32")
        if out is None:
            out = scaled if coefficient > 0 else -scaled
        else:
            out = out + scaled if coefficient > 0 else out - scaled
    return tirx.const(0.0, "float32") if out is None else out


def _pick(index, values: Sequence[tirx.PrimExpr]) -> tirx.PrimExpr:
    """``values[index]`` as a chain of Selects: one value once the loop over ``index`` is unrolled."""
    out = values[-1]
    for i in range(len(values) - 2, -1, -1):
        out = tirx.Select(index == i, values[i], out)
    return out


def winograd_weight(weight: te.Tensor, m: int, block: int) -> te.Tensor:
    """OIHW 3x3 weights -> ``G g G^T`` as ``((m+2)^2, O/b, I/b, b_in, b_out)``, zero past O and I."""
    _, _, g = _matrices(m)
    alpha = m + 2
    out_channels, in_channels = int(weight.shape[0]), int(weight.shape[1])

    def value(e, ob, ib, ii, oi):
        o, i = ob * block + oi, ib * block + ii
        w = lambda kh, kw: weight[tirx.min(o, out_channels - 1), tirx.min(i, in_channels - 1), kh, kw]  # noqa: E731
        per_position: List[tirx.PrimExpr] = [
            _sum([(g[eps][kh] * g[nu][kw], w(kh, kw)) for kh in range(3) for kw in range(3)])
            for eps in range(alpha) for nu in range(alpha)]
        return tirx.if_then_else(tirx.all(o < out_channels, i < in_channels), _pick(e, per_position),
                                 tirx.const(0.0, weight.dtype))

    return te.compute((alpha * alpha, -(-out_channels // block), -(-in_channels // block), block, block), value,
                      name="winograd_weight")


def conv2d_winograd_nchwc(data: te.Tensor, weight: te.Tensor, padding, m: int) -> te.Tensor:
    """3x3 stride-1 conv of a blocked ``(N, C/b, H, W, b)`` input with :func:`winograd_weight`'s
    output; ``padding`` (top, left, bottom, right); output ``(N, O/b, OH, OW, b)``."""
    a, b, _ = _matrices(m)
    alpha = m + 2
    n, in_blocks, height, width, block = (int(d) for d in data.shape)
    out_blocks = int(weight.shape[1])
    top, left, bottom, right = (int(p) for p in padding)
    out_h, out_w = height + top + bottom - 2, width + left + right - 2
    tiles_h, tiles_w = -(-out_h // m), -(-out_w // m)
    padded = topi.nn.pad(data, [0, 0, top, left, 0], [0, 0, tiles_h * m + 2 - height - top, tiles_w * m + 2 - width - left, 0],
                         name="pad_temp")
    tiles = n * tiles_h * tiles_w  # tile p: image p // (tiles_h * tiles_w), row-major within it

    def rows(e, p, cb, ci):  # e = eps * alpha + column: B^T applied down each column of the input tile
        eps, column, image, q = e // alpha, e % alpha, p // (tiles_h * tiles_w), p % (tiles_h * tiles_w)
        y, x = (q // tiles_w) * m, (q % tiles_w) * m + column
        return _pick(eps, [_sum([(b[r][k], padded[image, cb, y + r, x, ci]) for r in range(alpha)]) for k in range(alpha)])

    rows_t = te.compute((alpha * alpha, tiles, in_blocks, block), rows, name="winograd_rows")
    transformed = te.compute(
        (alpha * alpha, tiles, in_blocks, block),
        lambda e, p, cb, ci: _pick(e % alpha, [_sum([(b[c][k], rows_t[(e // alpha) * alpha + c, p, cb, ci]) for c in range(alpha)])
                                               for k in range(alpha)]),
        name="winograd_data")
    rcb, rci = te.reduce_axis((0, in_blocks), "rcb"), te.reduce_axis((0, block), "rci")
    products = te.compute(
        (alpha * alpha, out_blocks, tiles, block),
        lambda e, ob, p, oi: te.sum(transformed[e, p, rcb, rci] * weight[e, ob, rcb, rci, oi], axis=[rcb, rci]),
        name="winograd_gemm")
    cols = te.compute(  # e = row * m + x: A applied along each row of the products
        (alpha * m, out_blocks, tiles, block),
        lambda e, ob, p, oi: _pick(e % m, [_sum([(a[c][k], products[(e // m) * alpha + c, ob, p, oi]) for c in range(alpha)])
                                           for k in range(m)]),
        name="winograd_cols")
    return te.compute(
        (n, out_blocks, out_h, out_w, block),
        lambda i, ob, y, x, oi: _pick(y % m, [_sum([(a[r][k], cols[r * m + x % m, ob, (i * tiles_h + y // m) * tiles_w + x // m, oi])
                                                    for r in range(alpha)]) for k in range(m)]),
        name="winograd_out")
