"""Why is my pruned model slow? The staircase diagnosis of any model, pruned by any tool.

For every prunable channel group of the model as it is: the latency staircase of its
kernels on the target, measured around the model's own widths and beyond them (the model
widened by zero channels, :func:`hakd.passes.widen.widen`: same function, wider kernels), and
where its width sits: just past a step (a few channels fewer would save a whole step),
inside a step (more channels would cost nothing), or on an optimal point. Then the whole
model snapped down (the saving) and up (the free capacity), predicted. Given the model before
pruning (``unpruned``), also what the simple answer would keep at the model's latency: one keep
ratio for every group, widths rounded to the target's vector width (:func:`hakd.budget.fit_uniform`)::

    d = diagnose(pruned_model, torch.zeros(1, 3, 32, 32), Profiler("host"), unpruned=original_model)
    for row in d.rows: print(row["group"], row["verdict"], row["saving_s"])
    d.uniform["params"], d.uniform["fraction"]   # the simple answer at the model's predicted latency
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, Iterable, List, Mapping, Optional

import torch
from torch import nn

from hakd.baselines.widths import l1_importance
from hakd.budget import fit_uniform
from hakd.cost.profile import Profiler
from hakd.errors import BudgetError, ConfigError, GroupError
from hakd.passes.counts import count
from hakd.passes.groups import find_groups
from hakd.passes.rebuild import rebuild
from hakd.passes.snap import diagnose_width, snap
from hakd.passes.trace import input_shape, trace
from hakd.passes.uniform import uniform_choice
from hakd.passes.widen import widen
from hakd.plan import PrunePlan
from hakd.staircases import Staircases
from hakd.sweep import model_staircases, predict

__all__ = ["diagnose", "Diagnosis", "uniform_at"]


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
    uniform: Optional[dict] = None  # with the unpruned model: the simple answer at this latency (see uniform_at)


def diagnose(model: nn.Module, example_input: torch.Tensor, profiler: Profiler, headroom: int = 16,
             only: Optional[Iterable[str]] = None, unpruned: Optional[nn.Module] = None,
             log: Callable[[str], None] = print) -> Diagnosis:
    """Diagnose ``model`` (or the groups in ``only``) on ``profiler``'s target; staircases reach
    ``headroom`` channels past each width. With ``unpruned`` (``model`` before pruning), also
    :func:`uniform_at` the model's predicted latency."""
    if isinstance(headroom, bool) or not isinstance(headroom, int) or headroom < 1:
        raise ConfigError(f"diagnose: headroom is how many channels past each width to measure, an integer >= 1; "
                          f"got {headroom!r}")
    gm = trace(model.eval(), example_input)
    groups = find_groups(gm)
    origin = None if unpruned is None else _origin(unpruned, example_input, groups.widths())  # checked before measuring
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
    shape, latency_s = tuple(example_input.shape), predict(profiler, wide, wide_groups, plan)
    uniform = None if origin is None else _uniform(*origin, profiler, latency_s, log)
    return Diagnosis(rows, latency_s, predict(profiler, wide, wide_groups, down),
                     predict(profiler, wide, wide_groups, up), count(rebuild(wide, wide_groups, plan), shape)[0],
                     count(rebuild(wide, wide_groups, up), shape)[0], stairs, not_widened, uniform)


def uniform_at(unpruned: nn.Module, example_input: torch.Tensor, profiler: Profiler, latency_s: float,
               widths: Mapping[str, int], log: Callable[[str], None] = print) -> dict:
    """What the simple answer keeps at ``latency_s``: the widest single keep ratio of ``unpruned``
    (channels by L1 norm, widths rounded to the target's vector width) predicted within it.
    ``widths`` (the pruned model's, by group) must name groups of ``unpruned`` no wider than they
    are there. {"multiple", "fraction", "params", "predicted_s", "widths"}, or {"unreachable": why}."""
    return _uniform(*_origin(unpruned, example_input, widths), profiler, latency_s, log)


def _origin(unpruned: nn.Module, example_input: torch.Tensor, widths: Mapping[str, int]):
    gm = trace(unpruned.eval(), example_input)
    groups = find_groups(gm)
    full = groups.widths()
    origin = "give the model it was pruned from (the same architecture and module names)"
    missing = [g for g in widths if g not in full]
    if missing:
        raise ConfigError(f"the unpruned model has no channel group {missing[0]!r}, which the pruned model has: {origin}")
    wider = [g for g, w in widths.items() if w > full[g]]
    if wider:
        raise ConfigError(f"channel group {wider[0]!r} has {widths[wider[0]]} channels in the pruned model but "
                          f"{full[wider[0]]} in the unpruned one: {origin}")
    return gm, groups


def _uniform(gm, groups, profiler: Profiler, latency_s: float, log) -> dict:
    try:
        result = fit_uniform(profiler, gm, groups, groups.plan(), l1_importance(gm, groups), latency_s, log=log)
    except BudgetError as e:
        return {"unreachable": str(e)}
    multiple, fraction = uniform_choice(result.plan.note)
    kept: Dict[str, int] = {g.name: result.plan.width(g.name) for g in groups.prunable()}
    return {"multiple": multiple, "fraction": fraction, "predicted_s": result.predicted_s, "widths": kept,
            "params": count(rebuild(gm, groups, result.plan), input_shape(gm))[0]}
