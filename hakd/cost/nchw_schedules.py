"""Schedule templates for fused kernels on plain NCHW activations (``Profiler(channel_block=0)``),
and their candidates (:func:`hakd.cost.schedules.candidates` hands such kernels here):

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
- ``default``: TVM's unscheduled loop nest (it wins for a few tiny kernels).

A dense conv tries ``conv2d`` and up to three ``blocked`` tiles, a depthwise or grouped one the
oc tiles 8 and 16 with the longest vector that divides the output width (and ``rows`` if
depthwise), and ``default`` where it can win (depthwise and grouped convs, and convs of fewer
than 8 output channels); the fastest is recorded and deployed.

>>> [c.key() for c in nchw_candidates("depthwise", 32, 14, 14, packed_weights=False)]
['depthwise/oc8/v14', 'depthwise/oc16/v14', 'rows/oc4/v14/r2', 'default']
"""

from __future__ import annotations

from typing import List

from tvm import tirx

from hakd.cost.schedule_steps import ScheduleConfig, inline_epilogue, parallel_pad, pixel_tile, vectors

__all__ = ["NCHW_TEMPLATES", "nchw_candidates", "packed"]


def nchw_candidates(kind: str, out_channels: int, out_height: int, out_width: int, packed_weights: bool) -> List[ScheduleConfig]:
    """The configurations tried for a ``kind`` kernel (``conv2d``, ``depthwise``, ``grouped``) writing
    NCHW; ``packed_weights``: its weights are packed in blocks (:mod:`hakd.cost.packed_conv`)."""
    vector = vectors(out_width)[0]
    if kind == "conv2d" and out_channels < 8:  # one tile either way; TVM's loop nest wins for narrow 1x1 convs
        return [ScheduleConfig(kind, oc_tile=8, vector=vector), ScheduleConfig("default")]
    if kind == "conv2d":
        # TVM's loop nest never beat a template on a conv2d of 8 or more output channels (0 of ~500
        # signatures in four tables): compiling it is waste. Both row tiles stay: on 2727 kernels
        # timed with both (version 1 tables) the one dividing the channels was within 3% of the
        # best on only 0.56 of them (up to 3.4x slower).
        rows = [ScheduleConfig(kind, oc_tile=t, vector=vector) for t in (8, 16)]
        return rows + (_blocked(out_channels, out_height, out_width) if packed_weights else [])
    # TVM's loop nest does win some strided depthwise convs.
    rows = [ScheduleConfig("rows", oc_tile=4, vector=vector, rows=max(r for r in (1, 2, 4) if out_height % r == 0))] \
        if kind == "depthwise" else []
    return [ScheduleConfig(kind, oc_tile=t, vector=vector) for t in (8, 16)] + rows + [ScheduleConfig("default")]


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
        rows, columns = pixel_tile(height, width, pixels)
        cfg = ScheduleConfig("blocked", oc_tile=oc_tile, vector=columns, rows=rows)
        if cfg not in configs:
            configs.append(cfg)
    return configs


def packed(func: tirx.PrimFunc) -> bool:
    """Does this conv read weights packed by :mod:`hakd.cost.packed_conv` (5-D)?"""
    return len(func.params[1].ty.shape) == 5


def _conv2d(sch, names, cfg: ScheduleConfig):
    main = "conv2d_nchw" if "conv2d_nchw" in names else "group_conv2d_nchw"
    conv = sch.get_sblock(main)
    epi = inline_epilogue(sch, names, main)
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
    parallel_pad(sch, names)
    sch.decompose_reduction(conv, rc)


def _blocked_conv2d(sch, names, cfg: ScheduleConfig):
    """Register tile: ``oc_tile`` output channels (vectorised, in vectors of at most 16) by
    ``rows`` x ``vector`` output pixels (unrolled), accumulated with channels innermost; the
    epilogue runs on the tile as it is written back."""
    if "conv2d_nchw" not in names or not packed(sch.mod["main"]):
        raise ValueError("the blocked template needs a dense conv with packed weights")
    conv = sch.get_sblock("conv2d_nchw")
    epi = inline_epilogue(sch, names, "conv2d_nchw")
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
    parallel_pad(sch, names)
    sch.decompose_reduction(conv, rc)


def _rows(sch, names, cfg: ScheduleConfig):
    """Depthwise: per tile of ``oc_tile`` channels, ``rows`` output rows by a ``vector`` of
    columns accumulated together, the 3x3 window unrolled, so that each input row loaded serves
    every output row it overlaps (1.3-2.1x the row template on MobileNetV2's depthwise convs)."""
    main = "group_conv2d_nchw"
    conv = sch.get_sblock(main)
    epi = inline_epilogue(sch, names, main)
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
    parallel_pad(sch, names)
    sch.decompose_reduction(conv, rc)

NCHW_TEMPLATES = {"conv2d": _conv2d, "blocked": _blocked_conv2d, "rows": _rows, "depthwise": _conv2d, "grouped": _conv2d}
