"""Spend a latency budget across channel groups: a multiple-choice knapsack over their staircases.

Each group offers options, one of which must be taken: a width (an optimal point of its
staircase), the latency of the group's kernels at that width, and a value (the importance
of the channels it keeps, or its parameters). :func:`allocate` maximises the total value
with the total latency within a capacity, exactly, by dynamic programming over a latency
grid of ``capacity / bins``: each latency is rounded *up* to the grid, so the answer
always fits the capacity, and its value is at least that of the best allocation within
``capacity - groups * capacity / bins`` (rounding adds less than one grid step per group)::

    >>> options = {"a": [(8, 1.0, 3.0), (16, 2.0, 5.0)], "b": [(8, 1.0, 1.0), (16, 2.0, 4.0)]}
    >>> alloc = allocate(options, capacity_s=3.0, bins=300)  # a grid of 0.01 s
    >>> alloc.widths, alloc.latency_s, alloc.value
    ({'a': 8, 'b': 16}, 3.0, 7.0)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Mapping, Sequence, Tuple

import numpy as np

from hakd.errors import BudgetError, ConfigError
from hakd.passes.snap import resize
from hakd.plan import PrunePlan

__all__ = ["Allocation", "allocate", "budget_options", "allowed_widths", "check_min_keep", "importance_kept", "VALUES"]

Option = Tuple[int, float, float]  # (width, latency in seconds, value)
VALUES = ("importance", "params")


def importance_kept(plan: PrunePlan, importance: Mapping[str, np.ndarray], groups=None) -> float:
    """The importance of the channels ``plan`` keeps, summed over ``groups`` (default: every group
    ``importance`` scores)::

        >>> importance_kept(PrunePlan({"a": (0, 2)}, {"a": 3}), {"a": np.array([1.0, 2.0, 4.0])})
        5.0
    """
    return float(sum(np.asarray(importance[g])[list(plan.kept(g))].sum()
                     for g in (importance if groups is None else groups)))


@dataclasses.dataclass(frozen=True)
class Allocation:
    widths: Dict[str, int]
    latency_s: float  # the sum of the chosen options' latencies (not rounded)
    value: float
    grid_s: float  # the latency grid the DP used: the answer is optimal within capacity - groups * grid_s


def allocate(options: Mapping[str, Sequence[Option]], capacity_s: float, bins: int = 4000) -> Allocation:
    """The choice of one option per group with the largest total value whose total latency
    stays within ``capacity_s`` (ties: the lower latency). Raises BudgetError, stating the
    least latency reachable, when no choice fits."""
    if bins < 1:
        raise ConfigError(f"allocate: bins must be >= 1, got {bins}")
    names = list(options)
    if any(not options[g] for g in names):
        raise ConfigError(f"allocate: group {next(g for g in names if not options[g])!r} offers no option")
    least = sum(min(o[1] for o in options[g]) for g in names)
    if capacity_s <= 0 or least > capacity_s:
        raise BudgetError(f"no choice of widths fits {capacity_s * 1e6:.1f} us: the fastest option of every group "
                          f"adds up to {least * 1e6:.1f} us")
    grid = capacity_s / bins
    best = np.full(bins + 1, -np.inf)  # best[b]: the largest value whose latency takes exactly b grid steps
    best[0] = 0.0
    choices: List[np.ndarray] = []
    units_of: List[List[int]] = []
    for g in names:
        units = [min(bins + 1, math.ceil(latency / grid - 1e-9)) for _, latency, _ in options[g]]
        new, choice = np.full(bins + 1, -np.inf), np.full(bins + 1, -1, dtype=np.int64)
        for i, ((_, _, value), u) in enumerate(zip(options[g], units)):
            if u > bins:
                continue
            shifted = np.full(bins + 1, -np.inf)
            shifted[u:] = best[: bins + 1 - u] + value
            better = shifted > new
            new[better], choice[better] = shifted[better], i
        best = new
        choices.append(choice)
        units_of.append(units)
    if not np.isfinite(best).any():  # every fit was lost to rounding up
        raise BudgetError(f"no choice of widths fits {capacity_s * 1e6:.1f} us on a grid of {grid * 1e6:.3f} us; "
                          f"the fastest options add up to {least * 1e6:.1f} us: raise the budget or the bins")
    b = int(np.argmax(best))  # the first maximum: the lowest latency among the best values
    widths, latency, value = {}, 0.0, float(best[b])
    for g, choice, units in zip(reversed(names), reversed(choices), reversed(units_of)):
        i = int(choice[b])
        width, lat, _ = options[g][i]
        widths[g], latency, b = width, latency + lat, b - units[i]
    return Allocation(dict(sorted(widths.items())), latency, value, grid)


def check_min_keep(min_keep: float) -> None:
    if isinstance(min_keep, bool) or not isinstance(min_keep, (int, float)) or not 0.0 <= min_keep <= 1.0:
        raise ConfigError(f"min_keep is the fraction of each group's width every width keeps, in [0, 1]; got {min_keep!r}")


def allowed_widths(staircase, min_keep: float = 0.0, slices: int = 1) -> List[int]:
    """The optimal widths of ``staircase`` that keep at least ``min_keep`` of its group's full
    width (rounded up to whole slices, and at least one channel per slice): a floor on every
    group, as Torch-Pruning's ``max_pruning_ratio`` is a ceiling on what is pruned. The widest
    optimal width stands when none reaches the floor.

    >>> from hakd.staircases import GroupStaircase
    >>> st = GroupStaircase("g", 16, 8, 0.04, {4: 1e-4, 8: 1e-4, 12: 2e-4, 16: 2e-4}, (8, 16), {})
    >>> allowed_widths(st), allowed_widths(st, 0.5), allowed_widths(st, 0.7, slices=4)
    ([8, 16], [8, 16], [16])
    """
    check_min_keep(min_keep)
    floor = slices * max(1, math.ceil(min_keep * staircase.full_width / slices - 1e-9))
    return [w for w in staircase.optimal if w >= floor] or [max(staircase.optimal)]


def budget_options(plan: PrunePlan, staircases: Mapping, importance: Mapping[str, np.ndarray], value: str = "importance",
                   params_per_channel: Mapping[str, float] | None = None, min_keep: float = 0.0) -> Dict[str, List[Option]]:
    """Per group with a staircase (a dict of GroupStaircase): its optimal widths (those that keep
    ``min_keep`` of the group, :func:`allowed_widths`), each with its latency and its value: the
    importance of the channels kept at that width (the plan's channels, grown by the most
    important pruned ones or shrunk by the least important kept ones, as snapping does), or
    ``width * params_per_channel[group]``."""
    if value not in VALUES:
        raise ConfigError(f"budget value is {value!r}; valid values: {', '.join(VALUES)}")
    if value == "params" and params_per_channel is None:
        raise ConfigError("budget value 'params' needs params_per_channel (parameters one channel of each group holds)")
    out: Dict[str, List[Option]] = {}
    for g, st in staircases.items():
        widths = allowed_widths(st, min_keep, plan.slices.get(g, 1))
        if value == "params":
            out[g] = [(w, st.at(w), w * float(params_per_channel[g])) for w in widths]
            continue
        scores = np.asarray(importance[g], dtype=float) if g in importance else None
        if scores is None or scores.shape != (plan.widths[g],):
            raise BudgetError(f"no importance of the right size for group {g!r}: pass one score per channel "
                              "(Fisher saliency from fisher_prune, or l1_importance)")
        kept = plan.kept(g)
        n = plan.slices.get(g, 1)
        out[g] = [(w, st.at(w), float(scores[list(resize(kept, w, scores, n))].sum())) for w in widths]
    return out
