"""Channel-pruning baselines that only choose widths: L1 norm, uniform scaling, round-to-multiple.

Each returns a :class:`hakd.plan.PrunePlan`; ``fit_fraction`` finds the per-group
keep fraction that meets a parameter budget.

>>> import torch
>>> from hakd.models import resnet20
>>> from hakd.passes.trace import trace
>>> from hakd.passes.groups import find_groups
>>> gm = trace(resnet20(), torch.zeros(1, 3, 32, 32)); groups = find_groups(gm)
>>> uniform_plan(groups, 0.5).pruned_widths()["layers.6.conv1"]
32
>>> round_to_multiple(uniform_plan(groups, 0.3), groups, gm, 8, "up").pruned_widths()["layers.6.conv1"]
24
"""

from __future__ import annotations

import math
from typing import Callable, Dict

import numpy as np
from torch import fx

from hakd.passes.counts import count
from hakd.passes import snap
from hakd.passes.groups import ChannelGroups
from hakd.passes.rebuild import rebuild
from hakd.plan import PrunePlan

__all__ = ["l1_importance", "l1_plan", "uniform_plan", "round_to_multiple", "fit_fraction"]


def _kept_width(width: int, fraction: float, slices: int = 1) -> int:
    """``fraction`` of ``width`` rounded up, at least one channel (per slice: a multiple of ``slices``)."""
    return slices * max(1, min(width // slices, int(math.ceil(width * fraction / slices))))


def l1_importance(gm: fx.GraphModule, groups: ChannelGroups) -> Dict[str, np.ndarray]:
    """Per group channel: the L1 norm of every filter producing it (Li et al. 2017), summed over producers."""
    scores = {g.name: np.zeros(g.width) for g in groups.prunable()}
    for rec in groups.records.values():
        if rec.kind not in ("conv", "grouped", "linear"):
            continue
        weight = gm.get_parameter(rec.params[0]) if rec.params else gm.get_submodule(rec.module).weight
        norms = weight.detach().abs().flatten(1).sum(1).double().numpy()
        gidx, pos = groups.locate(rec.out_ids)
        for i, (g, p) in enumerate(zip(gidx, pos)):
            name = groups.groups[g].name if g >= 0 else None
            if name in scores:
                scores[name][p] += norms[i]
    return scores


def l1_plan(gm: fx.GraphModule, groups: ChannelGroups, fraction: float) -> PrunePlan:
    """Keep the ``fraction`` of each prunable group's channels with the largest L1 norm (of each
    slice, in a group in slices)."""
    scores = l1_importance(gm, groups)
    keep = {g: snap.resize(range(len(s)), _kept_width(len(s), fraction, groups[g].slices), s, groups[g].slices)
            for g, s in scores.items()}
    return groups.plan(keep=keep, note=f"l1 fraction={fraction:.4f}")


def uniform_plan(groups: ChannelGroups, fraction: float) -> PrunePlan:
    """Every prunable group scaled to ``fraction`` of its width (its first channels)."""
    return groups.plan({g.name: _kept_width(g.width, fraction, g.slices) for g in groups.prunable()},
                       note=f"uniform fraction={fraction:.4f}")


def round_to_multiple(plan: PrunePlan, groups: ChannelGroups, gm: fx.GraphModule, multiple: int = 8,
                      mode: str = "down") -> PrunePlan:
    """Round each pruned group's width to a multiple of ``multiple`` (never below it, never above
    the group's width): ``down`` drops the plan's least important kept channels (L1), ``up``
    restores the most important pruned ones. One mechanism with snapping:
    :func:`hakd.passes.snap.round_to_multiple` with L1 importance."""
    return snap.round_to_multiple(plan, groups, l1_importance(gm, groups), multiple, mode)


def fit_fraction(make_plan: Callable[[float], PrunePlan], gm: fx.GraphModule, groups: ChannelGroups,
                 params_fraction: float, input_shape) -> PrunePlan:
    """The plan from ``make_plan(f)`` with the largest f whose parameters stay within
    ``params_fraction`` of the model's (bisection on f)."""
    full, _ = count(gm, input_shape)
    lo, hi = 0.0, 1.0
    for _ in range(20):
        mid = (lo + hi) / 2
        params, _ = count(rebuild(gm, groups, make_plan(mid)), input_shape)
        if params <= params_fraction * full:
            lo = mid
        else:
            hi = mid
    return make_plan(lo)
