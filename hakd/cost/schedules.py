"""hakd's kernel schedule templates for the fused kernels of CNNs, and their search space.

TVM 0.27 builds an unscheduled loop nest by default, ~75x slower than PyTorch for a
conv; nobody deploys that. hakd schedules each fused kernel itself with a small
template per kernel kind, and the same schedule is used to measure and to deploy.

On channel-blocked activations (``NCHW{b}c``, :mod:`hakd.cost.layout`, every target's default):

- ``nchwc`` (dense conv) and ``dwc`` (depthwise): a register tile of ``oc_tile`` channels (one
  or two blocks, a vector each) by ``rows`` x ``vector`` output pixels, as many as the target's
  vector registers hold (:func:`_nchwc`); a dense conv broadcasts each input value once per
  tile, a depthwise conv unrolls its window and reads its input unpadded (a padded copy cost
  it up to half its time); the epilogue is applied as the tile is written back;
- ``flat`` (dense conv, 16-register targets): the same tile over output pixels in row-major order,
  rows wrapping, so that a map's width need not divide it: only the map's last tile has a tail.

On plain NCHW activations (``Profiler(channel_block=0)``):

- ``conv2d``: NCHW conv (3x3, 1x1, strided) with its fused epilogue (bias, residual
  add, ReLU): output channels split by ``oc_tile`` (unrolled), output width split by
  ``vector`` (vectorised), accumulation in registers, epilogue computed per output
  row, outer loops parallel;
- ``blocked``: the same conv vectorised over output channels instead (weights packed in
  blocks of 16 output channels by :mod:`hakd.cost.packed_conv`): a register tile of
  ``oc_tile`` channels by ``rows`` x ``vector`` output pixels, each input value broadcast
  once per tile, the epilogue applied as the tile is written back. It fills the vector
  unit on small maps (8x8, 7x7, 4x4), where ``conv2d`` has short vectors;
- ``depthwise`` and ``grouped``: the conv template on TVM's grouped conv block;
- ``rows`` (depthwise): a tile of channels by several output rows by a vector of columns,
  the window unrolled so that each input row loaded serves every output row it overlaps;
- ``generic``: everything else (pooling, dense, reshapes): outer loops parallel;
- ``default``: TVM's unscheduled loop nest (it wins for a few tiny kernels).

A dense conv tries ``conv2d`` and up to three ``blocked`` tiles (:func:`candidates`), a
depthwise or grouped one the oc tiles 8 and 16 with the longest vector that divides the
output width (and ``rows`` if depthwise), and ``default`` where it can win (depthwise and
grouped convs, and convs of fewer than 8 output channels); the fastest is recorded and
deployed.

>>> ScheduleConfig("conv2d", oc_tile=8, vector=16).key(), ScheduleConfig("blocked", oc_tile=16, vector=8, rows=2).key()
('conv2d/oc8/v16', 'blocked/oc16/v8/r2')
"""

from __future__ import annotations

import dataclasses
from typing import List

from tvm import s_tir, tirx

from hakd.errors import HakdError

__all__ = ["ScheduleConfig", "SCHEDULE_VERSION", "TUNABLE", "TUNED", "kernel_kind", "candidates", "apply_schedule", "ScheduleError"]

TUNABLE = ("conv2d", "depthwise", "grouped")  # kinds hakd.cost.tune may hand to meta_schedule
TUNED = "meta_schedule"  # the template name of a tuned kernel
SCHEDULE_VERSION = 7  # bump when a template or the candidate set changes: table rows of older versions are not reused


class ScheduleError(HakdError):
    """A schedule template does not fit a kernel."""


@dataclasses.dataclass(frozen=True)
class ScheduleConfig:
    """One point of a template's configuration space."""

    template: str
    oc_tile: int = 0
    vector: int = 0
    digest: str = ""  # a tuned schedule (hakd.cost.tune): the digest of the scheduled kernel
    rows: int = 0  # blocked, rows: output rows per register tile (vector: output columns)

    def key(self) -> str:
        return "/".join([self.template] + ([f"oc{self.oc_tile}"] if self.oc_tile else []) + ([f"v{self.vector}"] if self.vector else [])
                        + ([f"r{self.rows}"] if self.rows else []) + ([self.digest] if self.digest else []))

    @classmethod
    def from_key(cls, key: str) -> "ScheduleConfig":
        parts = key.split("/")
        if parts[0] == TUNED:
            return cls(parts[0], digest=parts[1] if len(parts) > 1 else "")
        kw = {}
        for p in parts[1:]:
            if p.startswith("oc"):
                kw["oc_tile"] = int(p[2:])
            elif p.startswith("v"):
                kw["vector"] = int(p[1:])
            elif p.startswith("r"):
                kw["rows"] = int(p[1:])
        return cls(parts[0], **kw)


def _block_names(sch: s_tir.Schedule) -> List[str]:
    return [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]


def kernel_kind(func: tirx.PrimFunc) -> str:
    """``conv2d``, ``depthwise``, ``grouped`` or ``generic``, from the blocks of a fused kernel."""
    names = _block_names(s_tir.Schedule(func))
    if "conv2d_nchw" in names or "conv2d_NCHWc" in names:
        return "conv2d"
    if "depthwise_conv2d_NCHWc" in names:
        return "depthwise"
    if "group_conv2d_nchw" in names:
        weight = [int(x) for x in func.params[1].ty.shape]
        return "depthwise" if weight[1] == 1 else "grouped"
    return "generic"


def _extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def _vectors(width: int) -> List[int]:
    """Vector lengths that divide the output width (no tail), longest first, at most 16.

    LLVM legalises odd lengths (7, 14) well; a predicated tail is far slower (measured:
    a 14-wide 32->32 conv takes 26 us with vector 14, 250-400 us with vector 4 or 16)."""
    return [v for v in range(16, 3, -1) if width % v == 0] or [width if width < 4 else 1]


def _pixel_tile(height: int, width: int, pixels: int):
    """(rows, columns) of a register tile of at most ``pixels`` output pixels with no tail:
    columns the largest divisor of the width, then whole rows while they fit."""
    columns = max(c for c in range(1, min(width, pixels) + 1) if width % c == 0)
    rows = max(r for r in range(1, height + 1) if height % r == 0 and (r == 1 or columns == width) and r * columns <= pixels)
    return rows, columns


def _blocked(out_channels: int, height: int, width: int) -> List[ScheduleConfig]:
    """``blocked`` tiles for a dense conv: 16 channels by ~16 and ~8 pixels, 32 channels by ~8
    (the register file of AVX-512; LLVM splits them for narrower vectors). Channels not a
    multiple of the tile leave a scalar tail, so 8-channel tiles serve widths of 8k."""
    if out_channels % 8:
        return []
    tile = 16 if out_channels % 16 == 0 else 8
    shapes = [(tile, 16), (tile, 8)] + ([(32, 8)] if out_channels % 32 == 0 else [])
    configs = []
    for oc_tile, pixels in shapes:
        rows, columns = _pixel_tile(height, width, pixels)
        cfg = ScheduleConfig("blocked", oc_tile=oc_tile, vector=columns, rows=rows)
        if cfg not in configs:
            configs.append(cfg)
    return configs


def _packed(func: tirx.PrimFunc) -> bool:
    """Does this conv read weights packed by :mod:`hakd.cost.packed_conv` (5-D)?"""
    return len(func.params[1].ty.shape) == 5


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

    >>> [c.key() for c in _nchwc("conv2d", (1, 4, 14, 14, 8))]
    ['nchwc/oc8/v7/r1', 'nchwc/oc8/v14/r1', 'nchwc/oc8/v2/r1', 'nchwc/oc16/v2/r1', 'flat/oc32/v3']
    >>> [c.key() for c in _nchwc("conv2d", (1, 4, 14, 14, 16))]  # AVX-512: 28 pixels already cover the map's width
    ['nchwc/oc16/v14/r2', 'nchwc/oc16/v14/r1', 'nchwc/oc32/v14/r1']
    """
    blocks, height, width, block = (int(d) for d in out_shape[1:])
    budget = _registers(block) - 4
    shapes = ([(1, budget), (1, budget + 2), (1, budget // 2)] + ([(2, budget // 2)] if blocks % 2 == 0 else [])
              if kind == "conv2d" else [(1, budget // 2), (1, budget // 4)])
    configs = []
    for oc_blocks, pixels in shapes:
        rows, columns = _pixel_tile(height, width, pixels)
        cfg = ScheduleConfig("nchwc" if kind == "conv2d" else "dwc", oc_tile=oc_blocks * block, vector=columns, rows=rows)
        if cfg not in configs:
            configs.append(cfg)
    if kind == "conv2d" and _registers(block) == 16 and blocks >= 3 and width > 3:
        configs.append(ScheduleConfig("flat", oc_tile=4 * block, vector=3))  # see the note above
    return configs


def candidates(func: tirx.PrimFunc) -> List[ScheduleConfig]:
    """The configurations hakd tries for a kernel (a few per kernel: compiling is the cost)."""
    kind = kernel_kind(func)
    if kind == "generic":
        return [ScheduleConfig("generic"), ScheduleConfig("default")]
    if len(func.params[-1].ty.shape) == 5:  # a conv writing blocked channels (hakd.cost.blocked_conv)
        return _nchwc(kind, func.params[-1].ty.shape)
    out_channels, out_height, out_width = (int(x) for x in func.params[-1].ty.shape[1:])
    vector = _vectors(out_width)[0]
    if kind == "conv2d" and out_channels < 8:  # one tile either way; TVM's loop nest wins for narrow 1x1 convs
        return [ScheduleConfig(kind, oc_tile=8, vector=vector), ScheduleConfig("default")]
    if kind == "conv2d":
        # TVM's loop nest never beat a template on a conv2d of 8 or more output channels (0 of ~500
        # signatures in four tables): compiling it is waste. Both row tiles stay: on 2727 kernels
        # timed with both (version 1 tables) the one dividing the channels was within 3% of the
        # best on only 0.56 of them (up to 3.4x slower).
        rows = [ScheduleConfig(kind, oc_tile=t, vector=vector) for t in (8, 16)]
        return rows + (_blocked(out_channels, out_height, out_width) if _packed(func) else [])
    # TVM's loop nest does win some strided depthwise convs.
    rows = [ScheduleConfig("rows", oc_tile=4, vector=vector, rows=max(r for r in (1, 2, 4) if out_height % r == 0))] \
        if kind == "depthwise" else []
    return [ScheduleConfig(kind, oc_tile=t, vector=vector) for t in (8, 16)] + rows + [ScheduleConfig("default")]


def _inline_epilogue(sch, names, main: str):
    """Inline the elementwise chain after ``main`` into its last block; return that block, or
    None if there is none or it writes another shape than ``main`` (a pad for the next conv,
    a gate broadcast over a map): that one gets a loop nest of its own."""
    after = names[names.index(main) + 1:]
    for name in after[:-1]:
        sch.compute_inline(sch.get_sblock(name))
    if not after:
        return None
    last = sch.get_sblock(after[-1])
    shape = lambda block: [int(d) for d in sch.get(block).writes[0].source.shape]  # noqa: E731
    if shape(last) != shape(sch.get_sblock(main)):
        _generic_block(sch, last)
        return None
    return last


def _parallel_pad(sch, names):
    if "pad_temp" in names:
        loops = sch.get_loops(sch.get_sblock("pad_temp"))
        sch.parallel(sch.fuse(*loops[:2]))


def _conv2d(sch, names, cfg: ScheduleConfig):
    main = "conv2d_nchw" if "conv2d_nchw" in names else "group_conv2d_nchw"
    conv = sch.get_sblock(main)
    epi = _inline_epilogue(sch, names, main)
    n, ff, yy, xx, rc, ry, rx = sch.get_loops(conv)
    ffo, ffi = sch.split(ff, [None, cfg.oc_tile])
    xo, xi = sch.split(xx, [None, cfg.vector])
    sch.reorder(n, ffo, yy, xo, rc, ry, rx, ffi, xi)
    acc = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(acc, xo)
    if epi is not None:
        sch.reverse_compute_at(epi, yy)
        sch.vectorize(sch.split(sch.get_loops(epi)[-1], [None, cfg.vector])[1])
    sch.vectorize(sch.get_loops(acc)[-1])
    sch.vectorize(xi)
    sch.unroll(ffi)
    sch.parallel(sch.fuse(n, ffo, yy))
    _parallel_pad(sch, names)
    sch.decompose_reduction(conv, rc)


def _blocked_conv2d(sch, names, cfg: ScheduleConfig):
    """Register tile: ``oc_tile`` output channels (vectorised, in vectors of at most 16) by
    ``rows`` x ``vector`` output pixels (unrolled), accumulated with channels innermost; the
    epilogue runs on the tile as it is written back."""
    if "conv2d_nchw" not in names or not _packed(sch.mod["main"]):
        raise ValueError("the blocked template needs a dense conv with packed weights")
    conv = sch.get_sblock("conv2d_nchw")
    epi = _inline_epilogue(sch, names, "conv2d_nchw")
    n, ff, yy, xx, rc, ry, rx = sch.get_loops(conv)
    ffo, ffi = sch.split(ff, [None, cfg.oc_tile])
    yo, yi = sch.split(yy, [None, cfg.rows])
    xo, xi = sch.split(xx, [None, cfg.vector])
    lanes = min(cfg.oc_tile, 16)
    fv, fl = sch.split(ffi, [None, lanes])
    sch.reorder(n, ffo, yo, xo, rc, ry, rx, fv, yi, xi, fl)
    acc = sch.cache_write(conv, 0, "local")
    if epi is not None:
        sch.reverse_compute_inline(epi)
    sch.reverse_compute_at(acc, xo)
    sch.transform_layout(conv, ("write", 0), lambda b, o, y, x: (b, y, x, o))  # channels contiguous in registers
    for loop in sch.get_loops(acc)[-3:-1]:
        sch.unroll(loop)
    sch.vectorize(sch.get_loops(acc)[-1])
    for loop in (fv, yi, xi):
        sch.unroll(loop)
    sch.vectorize(fl)
    sch.parallel(sch.fuse(n, ffo, yo, xo))
    _parallel_pad(sch, names)
    sch.decompose_reduction(conv, rc)


def _rows(sch, names, cfg: ScheduleConfig):
    """Depthwise: per tile of ``oc_tile`` channels, ``rows`` output rows by a ``vector`` of
    columns accumulated together, the 3x3 window unrolled, so that each input row loaded serves
    every output row it overlaps (1.3-2.1x the row template on MobileNetV2's depthwise convs)."""
    main = "group_conv2d_nchw"
    conv = sch.get_sblock(main)
    epi = _inline_epilogue(sch, names, main)
    n, ff, yy, xx, rc, ry, rx = sch.get_loops(conv)
    ffo, ffi = sch.split(ff, [None, cfg.oc_tile])
    yo, yi = sch.split(yy, [None, cfg.rows])
    xo, xi = sch.split(xx, [None, cfg.vector])
    sch.reorder(n, ffo, yo, xo, ffi, rc, ry, rx, yi, xi)
    acc = sch.cache_write(conv, 0, "local")
    sch.reverse_compute_at(acc, ffi)
    if epi is not None:
        sch.reverse_compute_inline(epi)
    for loop in (ry, rx, yi):
        sch.unroll(loop)
    sch.vectorize(xi)
    loops = sch.get_loops(acc)
    sch.unroll(loops[-2])
    sch.vectorize(loops[-1])
    sch.parallel(sch.fuse(n, ffo, yo, xo))
    _parallel_pad(sch, names)
    sch.decompose_reduction(conv, rc)


def _nchwc_conv(sch, names, cfg: ScheduleConfig):
    """Dense or depthwise conv on blocked channels: a register tile of ``oc_tile`` channels (whole
    blocks, each one vector) by ``rows`` x ``vector`` output pixels, accumulated over the input
    channels (dense: each input value broadcast once per tile; depthwise: the window unrolled);
    the epilogue applied as the tile is written back; outer loops parallel."""
    main = "conv2d_NCHWc" if "conv2d_NCHWc" in names else "depthwise_conv2d_NCHWc"
    if main not in names:
        raise ValueError("the nchwc and dwc templates need a conv on blocked channels")
    conv = sch.get_sblock(main)
    epi = _inline_epilogue(sch, names, main)
    n, o, y, x, lanes, *reduction = sch.get_loops(conv)
    block = _extent(sch, lanes)
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
    epi = _inline_epilogue(sch, names, "conv2d_NCHWc")
    n, o, y, x, lanes, *reduction = sch.get_loops(conv)
    width, block = _extent(sch, x), _extent(sch, lanes)
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


def _generic_block(sch, block):
    """One loop nest: the last dim vectorised (a concat's branch depends on an outer loop
    only: one per vector), the two outer dims parallel."""
    loops = sch.get_loops(block)
    if not loops:
        return
    iters = sch.get(block).iter_vars
    spatial = [lp for lp, iv in zip(loops, iters) if iv.iter_type == tirx.IterVar.DataPar]
    lead = [lp for lp in spatial[:2] if _extent(sch, lp) > 1]
    innermost = loops[-1]
    if len(loops) > 2 and spatial and spatial[-1] == innermost and _extent(sch, innermost) >= 4:
        vector = _vectors(_extent(sch, innermost))[0]
        if vector > 1:
            sch.vectorize(sch.split(innermost, [None, vector])[1])
    if len(lead) == 2 and spatial[:2] == loops[:2]:
        sch.parallel(sch.fuse(*lead))
    elif lead and lead[0] == loops[0]:
        sch.parallel(lead[0])


def _generic(sch, names, cfg: ScheduleConfig):
    for name in names:
        _generic_block(sch, sch.get_sblock(name))


def _default(sch, names, cfg: ScheduleConfig):
    """TVM's own loop nest, unscheduled: a candidate too, since it wins for some tiny kernels."""


TEMPLATES = {"nchwc": _nchwc_conv, "dwc": _nchwc_conv, "flat": _flat_conv, "conv2d": _conv2d, "blocked": _blocked_conv2d, "rows": _rows, "depthwise": _conv2d, "grouped": _conv2d, "generic": _generic, "default": _default}


def apply_schedule(func: tirx.PrimFunc, cfg: ScheduleConfig) -> tirx.PrimFunc:
    """``func`` scheduled by ``cfg``'s template; raises ScheduleError if the template does not fit."""
    sch = s_tir.Schedule(func)
    names = _block_names(sch)
    try:
        TEMPLATES[cfg.template](sch, names, cfg)
    except (KeyError, ValueError) as e:
        raise ScheduleError(f"schedule {cfg.key()} does not fit kernel with blocks {names}: {e}") from e
    except Exception as e:  # tvm raises ScheduleError / TVMError subclasses
        raise ScheduleError(f"schedule {cfg.key()} does not fit kernel with blocks {names}: {type(e).__name__}: {str(e)[:300]}") from e
    return sch.mod["main"]
