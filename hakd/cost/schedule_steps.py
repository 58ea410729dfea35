"""What every schedule template shares: a template's configuration and the schedule steps
they have in common (the fused epilogue inlined, generic loop nests, tile shapes).

>>> ScheduleConfig("conv2d", oc_tile=8, vector=16).key(), ScheduleConfig("blocked", oc_tile=16, vector=8, rows=2).key()
('conv2d/oc8/v16', 'blocked/oc16/v8/r2')
>>> ScheduleConfig.from_key("nchwc/oc16/v14/r2") == ScheduleConfig("nchwc", oc_tile=16, vector=14, rows=2)
True
>>> pixel_tile(14, 14, 28), vectors(28)[:2]
((2, 14), [14, 7])
"""

from __future__ import annotations

import dataclasses
from typing import List

from tvm import s_tir, tirx

__all__ = ["TUNED", "ScheduleConfig", "block_names", "extent", "vectors", "pixel_tile", "inline_epilogue",
           "parallel_pad", "generic_block"]

TUNED = "meta_schedule"  # the template name of a tuned kernel


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


def block_names(sch: s_tir.Schedule) -> List[str]:
    return [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]


def extent(sch, loop) -> int:
    return int(sch.get(loop).extent)


def vectors(width: int) -> List[int]:
    """Vector lengths that divide the output width (no tail), longest first, at most 16.

    LLVM legalises odd lengths (7, 14) well; a predicated tail is far slower (measured:
    a 14-wide 32->32 conv takes 26 us with vector 14, 250-400 us with vector 4 or 16)."""
    return [v for v in range(16, 3, -1) if width % v == 0] or [width if width < 4 else 1]


def pixel_tile(height: int, width: int, pixels: int):
    """(rows, columns) of a register tile of at most ``pixels`` output pixels with no tail:
    columns the largest divisor of the width, then whole rows while they fit."""
    columns = max(c for c in range(1, min(width, pixels) + 1) if width % c == 0)
    rows = max(r for r in range(1, height + 1) if height % r == 0 and (r == 1 or columns == width) and r * columns <= pixels)
    return rows, columns


def inline_epilogue(sch, names, main: str):
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
        generic_block(sch, last)
        return None
    return last


def parallel_pad(sch, names):
    if "pad_temp" in names:
        loops = sch.get_loops(sch.get_sblock("pad_temp"))
        sch.parallel(sch.fuse(*loops[:2]))


def generic_block(sch, block):
    """One loop nest: the last dim vectorised (a concat's branch depends on an outer loop
    only: one per vector), the two outer dims parallel."""
    loops = sch.get_loops(block)
    if not loops:
        return
    iters = sch.get(block).iter_vars
    spatial = [lp for lp, iv in zip(loops, iters) if iv.iter_type == tirx.IterVar.DataPar]
    lead = [lp for lp in spatial[:2] if extent(sch, lp) > 1]
    innermost = loops[-1]
    if len(loops) > 2 and spatial and spatial[-1] == innermost and extent(sch, innermost) >= 4:
        vector = vectors(extent(sch, innermost))[0]
        if vector > 1:
            sch.vectorize(sch.split(innermost, [None, vector])[1])
    if len(lead) == 2 and spatial[:2] == loops[:2]:
        sch.parallel(sch.fuse(*lead))
    elif lead and lead[0] == loops[0]:
        sch.parallel(lead[0])
