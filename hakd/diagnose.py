"""Why is my pruned model slow? The staircase diagnosis of any model, pruned by any tool.

For every prunable channel group of the model as it is: the latency staircase of its
kernels on the target, measured around the model's own widths and beyond them (the model
widened by zero channels, :func:`hakd.passes.widen.widen`: same function, wider kernels), and
where its width sits: just past a step (a few channels fewer would save a whole step),
inside a step (more channels would cost nothing), or on an optimal point. Then the whole
model snapped down (the saving) and up (the free capacity), predicted::

    d = diagnose(pruned_model, torch.zeros(1, 3, 32, 32), Profiler("host"))
    for row in d.rows: print(row["group"], row["verdict"], row["saving_s"])
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Iterable, List, Optional

import torch
from torch import nn

from hakd.baselines.widths import l1_importance
from hakd.cost.profile import Profiler
from hakd.errors import GroupError
from hakd.passes.counts import count
from hakd.passes.groups import find_groups
from hakd.passes.rebuild import rebuild
from hakd.passes.snap import diagnose_width, snap
from hakd.passes.trace import trace
from hakd.passes.widen import widen
from hakd.plan import PrunePlan
from hakd.staircases import Staircases
from hakd.sweep import model_staircases, predict

__all__ = ["diagnose", "Diagnosis"]


@dataclasses.dataclass
class Diagnosis:
    rows: List[dict]  # per group: width, latency, verdict, down width and saving, up width and free channels
    latency_s: float  # the model as it is, predicted
    down_s: float  # every group snapped down
    up_s: float  # every group snapped up
    params: int
    up_params: int
    staircases: Staircases
    not_widened: List[str]  # groups measured up to their own width only (cannot be widened)


def diagnose(model: nn.Module, example_input: torch.Tensor, profiler: Profiler, headroom: int = 16,
             only: Optional[Iterable[str]] = None, log: Callable[[str], None] = print) -> Diagnosis:
    """Diagnose ``model`` (or the groups in ``only``) on ``profiler``'s target; staircases reach
    ``headroom`` channels past each width."""
    gm = trace(model.eval(), example_input)
    groups = find_groups(gm)
    widths, not_widened = {}, []
    names = list(only) if only is not None else [g.name for g in groups.prunable()]
    for g in (groups[n] for n in names if n in groups.by_name and groups[n].prunable):
        try:
            widen(gm, groups, {g.name: g.width + 1})
            widths[g.name] = g.width + headroom
        except GroupError:
            not_widened.append(g.name)
    wide = trace(widen(gm, groups, widths), example_input)
    wide_groups = find_groups(wide)
    plan = PrunePlan.from_widths(groups.widths(), wide_groups.widths(), "the model as it is", wide_groups.slices())
    stairs = model_staircases(profiler, wide, wide_groups, plan, only=names, log=log)
    rows = [{"group": g, **diagnose_width(st, plan.width(g))} for g, st in stairs.groups.items()]
    importance = l1_importance(wide, wide_groups)
    down, up = snap(plan, stairs, importance, "down"), snap(plan, stairs, importance, "up")
    shape = tuple(example_input.shape)
    return Diagnosis(rows, predict(profiler, wide, wide_groups, plan), predict(profiler, wide, wide_groups, down),
                     predict(profiler, wide, wide_groups, up), count(rebuild(wide, wide_groups, plan), shape)[0],
                     count(rebuild(wide, wide_groups, up), shape)[0], stairs, not_widened)
