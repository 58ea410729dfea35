"""hakd's kernel schedule templates for the fused kernels of CNNs, and their search space.

TVM 0.27 builds an unscheduled loop nest by default, ~75x slower than PyTorch for a
conv; nobody deploys that. hakd schedules each fused kernel itself with a small
template per kernel kind, and the same schedule is used to measure and to deploy.

On channel-blocked activations (``NCHW{b}c``, :mod:`hakd.cost.layout`, every target's default):

- ``nchwc`` (dense conv) and ``dwc`` (depthwise): a register tile of ``oc_tile`` channels (one
  to three blocks, a vector each) by ``rows`` x ``vector`` output pixels, as many as the target's
  vector registers hold (:func:`_nchwc`); a dense conv broadcasts each input value once per
  tile, a depthwise conv unrolls its window and reads its input unpadded (a padded copy cost
  it up to half its time); the epilogue is applied as the tile is written back;
- ``flat`` (dense conv, 16-register targets): the same tile over output pixels in row-major order,
  rows wrapping, so that a map's width need not divide it: only the map's last tile has a tail.
- ``wino`` (a 3x3 stride-1 conv by Winograd's algorithm, :mod:`hakd.cost.winograd`): the
  transforms vectorised over channels, the products in a register tile of ``vector`` tiles by
  ``oc_tile`` channels.

Everywhere: ``generic`` for every other kernel (pooling, dense, reshapes; outer loops parallel) and
``default``, TVM's unscheduled loop nest (it wins for a few tiny kernels). Kernels on plain NCHW
activations (``Profiler(channel_block=0)``) have templates of their own:
:mod:`hakd.cost.nchw_schedules`. :func:`candidates` lists what is tried for a kernel; the fastest
is recorded and deployed.

>>> ScheduleConfig("conv2d", oc_tile=8, vector=16).key(), ScheduleConfig("blocked", oc_tile=16, vector=8, rows=2).key()
('conv2d/oc8/v16', 'blocked/oc16/v8/r2')
"""

from __future__ import annotations

from typing import List

from tvm import s_tir, tirx

from hakd.cost.nchw_schedules import NCHW_TEMPLATES, nchw_candidates, packed
from hakd.cost.schedule_steps import TUNED, ScheduleConfig, block_names, extent, generic_block, inline_epilogue, pixel_tile
from hakd.errors import HakdError

__all__ = ["ScheduleConfig", "SCHEDULE_VERSION", "TUNABLE", "TUNED", "kernel_kind", "candidates", "apply_schedule", "ScheduleError"]

TUNABLE = ("conv2d", "depthwise", "grouped")  # kinds hakd.cost.tune may hand to meta_schedule
SCHEDULE_VERSION = 10  # bump when a template, the candidate set or the layout rewrite changes: older table rows and staircases are not reused


class ScheduleError(HakdError):
    """A schedule template does not fit a kernel."""


def kernel_kind(func: tirx.PrimFunc) -> str:
    """``conv2d``, ``depthwise``, ``grouped`` or ``generic``, from the blocks of a fused kernel."""
    return _kind(func, block_names(s_tir.Schedule(func)))


def _kind(func: tirx.PrimFunc, names) -> str:
    if "conv2d_nchw" in names or "conv2d_NCHWc" in names or "winograd_gemm" in names:
        return "conv2d"
    if "depthwise_conv2d_NCHWc" in names:
        return "depthwise"
    if "group_conv2d_nchw" in names:
        weight = [int(x) for x in func.params[1].ty.shape]
        return "depthwise" if weight[1] == 1 else "grouped"
    return "generic"


def _registers(block: int) -> int:
    """Vector registers of the target whose vector holds ``block`` floats: 32 on AVX-512 (16)
    and NEON (4), 16 on AVX2 (8)."""
    return 16 if block == 8 else 32


def _nchwc(kind: str, out_shape) -> List[ScheduleConfig]:
    """Register tiles for a kernel on blocked channels (:mod:`hakd.cost.blocked_conv`): as many
    output pixels (and, for a dense conv, one or two channel blocks) as the vector registers hold,
    four kept for weights and inputs; and half as many pixels. A dense conv of one block also
    tries all registers but two (one weight vector, one broadcast input): with AVX2's 16, a
    14-pixel tile on 28- and 14-wide maps, 10-19% faster than 7 pixels on ResNet-20's 3x3 convs.
    With 16 registers a dense conv of 3 or more blocks also tries 4 blocks by 3 pixels (12
    accumulators, as ONNX Runtime's AVX2 kernel tiles) over the map's pixels in row-major order
    (``flat``): only the last tile of the map has a tail (blocks past the channels: predicated).
    Within rows (tails predicated in each row), that tile took 0.74-0.90x the time of the best
    dividing tile on 7- and 14-wide maps; over flat pixels it is 0.84-0.94x that again on 7-, 4-
    and 16-wide maps (a 7-wide row ended in a 1-pixel tile of 4 accumulators: half the FMA
    throughput), level on 14-wide ones. Measured with AVX-512 hidden on an Intel Xeon with AMX
    (LLVM: rocketlake; benchmarks/hide_avx512.c), 2026-12-03; on AVX-512 flat tiles lost.
    With 32 registers a dense conv whose blocks three divide also tries 3 blocks by up to 8 pixels
    (at most 24 accumulators; 7 pixels on 28-, 14- and 7-wide maps, as :func:`pixel_tile` divides
    the width): each broadcast input feeds three FMAs, as ONNX Runtime's MLAS tiles its pointwise convs: MobileNetV2's 1x1 convs in model context took 0.83-0.94x the time of the
    best other tile on 28x28, 32x32 and 7x7 maps (its 144-channel expand convs 0.83-0.88x), level
    or slower on 8x8 and 4x4 ones; 27 accumulators (9 pixels) spilled (1.2-1.7x). Same Intel host,
    AVX-512, 2026-12-04. With 16 registers such a conv also tries 3 blocks by 4 flat pixels: 0.95-0.99x
    on MobileNetV2's 28x28 and 4x4 maps, 1.14-1.20x on 7x7 ones (where 4 by 3 stays), and
    where four do not divide the blocks 4 by 3 is predicated (2.4x on the 144-channel expand).

    >>> [c.key() for c in _nchwc("conv2d", (1, 4, 14, 14, 8))]
    ['nchwc/oc8/v7/r1', 'nchwc/oc8/v14/r1', 'nchwc/oc8/v2/r1', 'nchwc/oc16/v2/r1', 'flat/oc32/v3']
    >>> [c.key() for c in _nchwc("conv2d", (1, 4, 14, 14, 16))]  # AVX-512: 28 pixels already cover the map's width
    ['nchwc/oc16/v14/r2', 'nchwc/oc16/v14/r1', 'nchwc/oc32/v14/r1']
    >>> [c.key() for c in _nchwc("conv2d", (1, 9, 28, 28, 16))][-1]
    'nchwc/oc48/v7/r1'
    """
    blocks, height, width, block = (int(d) for d in out_shape[1:])
    budget = _registers(block) - 4
    shapes = ([(1, budget), (1, budget + 2), (1, budget // 2)] + ([(2, budget // 2)] if blocks % 2 == 0 else [])
              + ([(3, 8)] if blocks % 3 == 0 and _registers(block) == 32 else [])
              if kind == "conv2d" else [(1, budget // 2), (1, budget // 4)])
    configs = []
    for oc_blocks, pixels in shapes:
        rows, columns = pixel_tile(height, width, pixels)
        cfg = ScheduleConfig("nchwc" if kind == "conv2d" else "dwc", oc_tile=oc_blocks * block, vector=columns, rows=rows)
        if cfg not in configs:
            configs.append(cfg)
    if kind == "conv2d" and _registers(block) == 16 and blocks >= 3 and width > 3:
        configs.append(ScheduleConfig("flat", oc_tile=4 * block, vector=3))  # see the note above
        if blocks % 3 == 0:
            configs.append(ScheduleConfig("flat", oc_tile=3 * block, vector=4))
    return configs


def _winograd(products_shape, block: int) -> List[ScheduleConfig]:
    """Register tiles of a Winograd conv's products (:mod:`hakd.cost.winograd`): ``vector`` tiles by
    ``oc_tile`` channels, at most the vector registers but four. The best of each conv measured
    (2026-12-04, ResNet-20/56, DenseNet and 2x2-56x56 maps) was among these: on AVX2 4x2 blocks
    and 3x4, on AVX-512 28x1, 6x2 and 4x4.

    >>> [c.key() for c in _winograd((36, 2, 49, 8), 8)]
    ['wino/oc8/v12', 'wino/oc16/v4', 'wino/oc16/v6']
    """
    out_blocks, tiles = int(products_shape[1]), int(products_shape[2])
    shapes = [(12, 1), (4, 2), (6, 2), (3, 4)] if _registers(block) == 16 else [(28, 1), (6, 2), (4, 4), (7, 4)]
    configs = []
    for pixels, blocks in shapes:
        cfg = ScheduleConfig("wino", oc_tile=blocks * block, vector=min(pixels, tiles))
        if blocks <= out_blocks and cfg not in configs:
            configs.append(cfg)
    return configs


def candidates(func: tirx.PrimFunc) -> List[ScheduleConfig]:
    """The configurations hakd tries for a kernel (a few per kernel: compiling is the cost)."""
    sch = s_tir.Schedule(func)
    names = block_names(sch)
    kind = _kind(func, names)
    if kind == "generic":
        return [ScheduleConfig("generic"), ScheduleConfig("default")]
    if "winograd_gemm" in names:
        products = sch.get(sch.get_sblock("winograd_gemm")).writes[0].source.shape
        return _winograd(products, int(products[-1]))
    if len(func.params[-1].ty.shape) == 5:  # a conv writing blocked channels (hakd.cost.blocked_conv)
        return _nchwc(kind, func.params[-1].ty.shape)
    out_channels, out_height, out_width = (int(x) for x in func.params[-1].ty.shape[1:])
    return nchw_candidates(kind, out_channels, out_height, out_width, packed(func))


def _nchwc_conv(sch, names, cfg: ScheduleConfig):
    """Dense or depthwise conv on blocked channels: a register tile of ``oc_tile`` channels (whole
    blocks, each one vector) by ``rows`` x ``vector`` output pixels, accumulated over the input
    channels (dense: each input value broadcast once per tile; depthwise: the window unrolled);
    the epilogue applied as the tile is written back; outer loops parallel."""
    main = "conv2d_NCHWc" if "conv2d_NCHWc" in names else "depthwise_conv2d_NCHWc"
    if main not in names:
        raise ValueError("the nchwc and dwc templates need a conv on blocked channels")
    conv = sch.get_sblock(main)
    epi = inline_epilogue(sch, names, main)
    n, o, y, x, lanes, *reduction = sch.get_loops(conv)
    block = extent(sch, lanes)
    oo, oi = sch.split(o, [None, max(1, cfg.oc_tile // block)])
    yo, yi = sch.split(y, [None, cfg.rows])
    xo, xi = sch.split(x, [None, cfg.vector])
    sch.reorder(n, oo, yo, xo, *reduction, oi, yi, xi, lanes)
    acc = sch.cache_write(conv, 0, "local")
    if epi is not None:
        sch.reverse_compute_inline(epi)
    sch.reverse_compute_at(acc, xo)
    for loop in sch.get_loops(acc)[-4:-1]:
        sch.unroll(loop)
    window = reduction[-3:-1] if main == "conv2d_NCHWc" and len(reduction) == 4 else reduction[-2:]
    _finish_tile(sch, names, cfg, conv, acc, ([] if main == "conv2d_NCHWc" else window) + [oi, yi, xi], lanes,
                 sch.fuse(n, oo, yo), reduction[0])


def _flat_conv(sch, names, cfg: ScheduleConfig):
    """Dense conv on blocked channels: a register tile of ``oc_tile`` channels by ``vector``
    consecutive output pixels in row-major order (``p = y * width + x``, rows wrapping), so that
    only the map's last tile has a tail; otherwise as :func:`_nchwc_conv`."""
    if "conv2d_NCHWc" not in names:
        raise ValueError("the flat template needs a dense conv on blocked channels")
    conv = sch.get_sblock("conv2d_NCHWc")
    epi = inline_epilogue(sch, names, "conv2d_NCHWc")
    n, o, y, x, lanes, *reduction = sch.get_loops(conv)
    width, block = extent(sch, x), extent(sch, lanes)
    flat = tirx.IndexMap.from_func(lambda b, o, y, x, i, *rest: (b, o, y * width + x, i, *rest), ndim=5 + len(reduction))
    sch.transform_block_layout(conv, flat)
    n, o, p, lanes, *reduction = sch.get_loops(conv)
    oo, oi = sch.split(o, [None, max(1, cfg.oc_tile // block)])
    po, pi = sch.split(p, [None, cfg.vector])
    sch.reorder(n, oo, po, *reduction, oi, pi, lanes)
    acc = sch.cache_write(conv, 0, "local")
    sch.transform_layout(conv, ("write", 0), lambda b, o, y, x, i: (b, o, y * width + x, i))  # the tile: a few registers
    if epi is not None:
        sch.reverse_compute_inline(epi)
    sch.transform_block_layout(acc, lambda b, o, y, x, i: (b, o, y * width + x, i))
    sch.reverse_compute_at(acc, po)
    for loop in sch.get_loops(acc)[-3:-1]:
        sch.unroll(loop)
    _finish_tile(sch, names, cfg, conv, acc, [oi, pi], lanes, sch.fuse(n, oo), reduction[0])


def _finish_tile(sch, names, cfg: ScheduleConfig, conv, acc, unrolled, lanes, outer, reduction):
    """The register tile's loops unrolled and its channels vectorised (in the accumulation and in
    the write-back), ``outer`` parallel, the padded copy inlined (depthwise) or vectorised."""
    sch.vectorize(sch.get_loops(acc)[-1])
    for loop in unrolled:
        sch.unroll(loop)
    sch.vectorize(lanes)
    sch.parallel(outer)
    if "pad_temp" in names and cfg.template == "dwc":  # a padded copy cost depthwise kernels up to half their time
        sch.compute_inline(sch.get_sblock("pad_temp"))
    elif "pad_temp" in names:
        pad = sch.get_loops(sch.get_sblock("pad_temp"))
        sch.vectorize(pad[-1])
        sch.parallel(sch.fuse(*pad[:2]))
    sch.decompose_reduction(conv, reduction)


def _winograd_conv(sch, names, cfg: ScheduleConfig):
    """A Winograd conv (:mod:`hakd.cost.winograd`): each stage over whole arrays, its transform
    positions unrolled (their coefficients fold) and its channels vectorised; the products in a
    register tile of ``vector`` tiles by ``oc_tile`` channels, as a direct conv's; the output
    transform per output tile, with the epilogue."""
    if "winograd_gemm" not in names:
        raise ValueError("the wino template needs a Winograd conv")
    pad = sch.get_loops(sch.get_sblock("pad_temp"))
    sch.vectorize(pad[-1])
    sch.parallel(sch.fuse(*pad[:2]))
    data = sch.get_sblock("winograd_data")
    e, p, cb, ci = sch.get_loops(data)
    sch.reorder(p, cb, e, ci)
    rows = sch.get_sblock("winograd_rows")
    sch.compute_at(rows, cb)
    for loops in (sch.get_loops(rows), sch.get_loops(data)):
        sch.unroll(loops[-2])
        sch.vectorize(loops[-1])
    sch.parallel(p)
    gemm = sch.get_sblock("winograd_gemm")
    e, o, p, lanes, *reduction = sch.get_loops(gemm)
    block = extent(sch, lanes)
    oo, oi = sch.split(o, [None, max(1, cfg.oc_tile // block)])
    po, pi = sch.split(p, [None, cfg.vector])
    sch.reorder(e, oo, po, *reduction, oi, pi, lanes)
    acc = sch.cache_write(gemm, 0, "local")
    sch.reverse_compute_at(acc, po)
    for loop in sch.get_loops(acc)[-3:-1]:
        sch.unroll(loop)
    sch.vectorize(sch.get_loops(acc)[-1])
    sch.unroll(oi)
    sch.unroll(pi)
    sch.vectorize(lanes)
    sch.parallel(e)
    sch.decompose_reduction(gemm, reduction[0])
    out = sch.get_sblock("winograd_out")
    epi = inline_epilogue(sch, names, "winograd_out")
    if epi is not None:
        sch.reverse_compute_inline(epi)
    n, o, y, x, lanes = sch.get_loops(out)
    tile = _winograd_tile(sch)
    ty, vy = sch.split(y, [None, tile])
    tx, vx = sch.split(x, [None, tile])
    sch.reorder(n, o, ty, tx, vy, vx, lanes)
    cols = sch.get_sblock("winograd_cols")
    sch.compute_at(cols, tx)
    loops = sch.get_loops(cols)
    sch.unroll(loops[-2])
    sch.vectorize(loops[-1])
    sch.unroll(vy)
    sch.unroll(vx)
    sch.vectorize(lanes)
    sch.parallel(sch.fuse(n, o, ty))


def _winograd_tile(sch) -> int:
    """``m`` of a Winograd conv's ``F(m x m, 3 x 3)``: its output transform has ``(m+2) m`` rows."""
    rows = int(sch.get(sch.get_sblock("winograd_cols")).writes[0].source.shape[0])
    return next(m for m in range(2, 9) if (m + 2) * m == rows)


def _generic(sch, names, cfg: ScheduleConfig):
    for name in names:
        generic_block(sch, sch.get_sblock(name))


def _default(sch, names, cfg: ScheduleConfig):
    """TVM's own loop nest, unscheduled: a candidate too, since it wins for some tiny kernels."""


TEMPLATES = {"nchwc": _nchwc_conv, "dwc": _nchwc_conv, "flat": _flat_conv, "wino": _winograd_conv, "generic": _generic, "default": _default, **NCHW_TEMPLATES}


def apply_schedule(func: tirx.PrimFunc, cfg: ScheduleConfig) -> tirx.PrimFunc:
    """``func`` scheduled by ``cfg``'s template; raises ScheduleError if the template does not fit."""
    sch = s_tir.Schedule(func)
    names = block_names(sch)
    try:
        TEMPLATES[cfg.template](sch, names, cfg)
    except (KeyError, ValueError) as e:
        raise ScheduleError(f"schedule {cfg.key()} does not fit kernel with blocks {names}: {e}") from e
    except Exception as e:  # tvm raises ScheduleError / TVMError subclasses
        raise ScheduleError(f"schedule {cfg.key()} does not fit kernel with blocks {names}: {type(e).__name__}: {str(e)[:300]}") from e
    return sch.mod["main"]
