"""Snap widths to the optimal points of their latency staircases: a decision, plan -> plan.

An optimal width is the widest width of its step (:mod:`hakd.staircases`). A pruner that
ignores the staircase lands a group just past a step (it pays a whole step for a few
channels) or inside one (it leaves channels that would cost nothing). For a group at
width ``w``:

- ``up``: the widest optimal width at most ``tol`` slower than ``w``: capacity for free
  (``w`` itself when no wider width is as fast);
- ``down``: the widest optimal width at or below ``w``: speed for free (``w`` itself when it
  is optimal; when ``w`` lies in the first step, the end of that step, since no narrower
  width is faster);
- ``nearest``: ``w`` when it is optimal, else whichever of up and down moves fewer channels
  (ties go up).

``up`` restores the group's pruned channels of highest importance, ``down`` drops its kept
channels of lowest importance: the plan's other choices stand. Rounding to a multiple of k
is snapping to :func:`hakd.staircases.tile_staircase`::

    >>> from hakd.plan import PrunePlan
    >>> from hakd.staircases import tile_staircase
    >>> import numpy as np
    >>> plan = PrunePlan.from_widths({"g": 9}, {"g": 16})
    >>> stairs = {"g": tile_staircase("g", 16, 8)}
    >>> importance = {"g": np.arange(16.0)}          # channel 15 matters most
    >>> snap(plan, stairs, importance, "down").keep["g"]   # channel 0, the least important, goes
    (1, 2, 3, 4, 5, 6, 7, 8)
    >>> snap(plan, stairs, importance, "up").width("g")
    16
"""

from __future__ import annotations

import math
from typing import Dict, Mapping, Sequence, Tuple

import numpy as np

from hakd.errors import ConfigError, PlanError
from hakd.plan import PrunePlan

__all__ = ["MODES", "snap_width", "snap", "resize", "round_to_multiple", "with_widths", "diagnose_width"]

MODES = ("up", "down", "nearest")


def snap_width(staircase, width: int, mode: str) -> int:
    """The width ``mode`` chooses for a group at ``width`` on ``staircase`` (a GroupStaircase).

    >>> from hakd.staircases import tile_staircase
    >>> st = tile_staircase("g", 20, 8)
    >>> [snap_width(st, w, "up") for w in (5, 8, 9, 17)], [snap_width(st, w, "down") for w in (5, 8, 9, 17)]
    ([8, 8, 16, 20], [8, 8, 8, 16])
    """
    if mode not in MODES:
        raise ConfigError(f"snap mode is {mode!r}; valid values: {', '.join(MODES)}")
    optimal = staircase.optimal
    if width in optimal:
        return width
    limit = staircase.at(width) * (1 + staircase.tol)
    up = max([o for o in optimal if o > width and staircase.at(o) <= limit], default=width)
    down = max([o for o in optimal if o < width], default=up)
    if mode == "up":
        return up
    if mode == "down":
        return down
    moves = [w for w in (up, down) if w != width]
    return min(moves, key=lambda w: (abs(w - width), -w)) if moves else width


def diagnose_width(staircase, width: int) -> dict:
    """Where ``width`` sits on its staircase: what snapping down would save, what snapping up gives.

    >>> from hakd.staircases import tile_staircase
    >>> d = diagnose_width(tile_staircase("g", 32, 8), 17)
    >>> d["verdict"], d["down_width"], d["saving_fraction"], d["up_width"]
    ('just past a step', 16, 0.333..., 24)
    """
    down, up = snap_width(staircase, width, "down"), snap_width(staircase, width, "up")
    now = staircase.at(width)
    saving = now - staircase.at(down) if down < width else 0.0
    if width in staircase.optimal:
        verdict = "on an optimal point"
    elif down < width and saving > staircase.tol * now:
        verdict = "just past a step"  # fewer channels save a whole step
    elif up > width:
        verdict = "inside a step"  # more channels cost nothing
    else:
        verdict = "on a slope"  # latency creeps with every channel: no step to gain from
    return {"width": width, "latency_s": now, "verdict": verdict, "down_width": down, "saving_s": saving,
            "saving_fraction": saving / now if now > 0 else 0.0, "up_width": up, "free_channels": up - width}


def resize(kept: Sequence[int], width: int, importance: np.ndarray, slices: int = 1) -> Tuple[int, ...]:
    """``kept`` (channel positions) grown or shrunk to ``width``: restore the pruned channels of
    highest importance, or drop the kept ones of lowest (ties: lower position first kept); in
    a group of ``slices`` equal slices, ``width / slices`` in each.

    >>> resize((0, 2), 3, np.array([0.1, 0.5, 0.3, 0.9])), resize((0, 2, 3), 1, np.array([0.1, 0.5, 0.3, 0.9]))
    ((0, 2, 3), (3,))
    >>> resize((0, 1, 2, 3), 2, np.array([0.1, 0.5, 0.3, 0.9]), slices=2)
    (1, 3)
    """
    importance = np.asarray(importance, dtype=float)
    if slices > 1:
        if width % slices:
            raise PlanError(f"a group in {slices} slices (a grouped conv's) resizes to multiples of {slices}, not {width}")
        block = len(importance) // slices
        return tuple(b * block + c for b in range(slices) for c in resize(
            [c - b * block for c in kept if c // block == b], width // slices, importance[b * block:(b + 1) * block]))
    kept = sorted(int(c) for c in kept)
    if not 1 <= width <= len(importance):
        raise PlanError(f"cannot resize a group of {len(importance)} channels to width {width}")
    order = sorted(range(len(importance)), key=lambda c: (-importance[c], c))  # most important first
    if width < len(kept):
        inside = set(kept)
        kept = [c for c in order if c in inside][:width]
    elif width > len(kept):
        inside = set(kept)
        kept = kept + [c for c in order if c not in inside][: width - len(kept)]
    return tuple(sorted(kept))


def _importance_of(importance: Mapping[str, np.ndarray], group: str, width: int) -> np.ndarray:
    if group not in importance:
        raise PlanError(f"no channel importance for group {group!r}: pass one score per channel for every group "
                        "that changes width (Fisher saliency from fisher_prune, or l1_importance)")
    scores = np.asarray(importance[group], dtype=float)
    if scores.shape != (width,):
        raise PlanError(f"importance of group {group!r} has {scores.size} scores; the group has {width} channels")
    return scores


def with_widths(plan: PrunePlan, widths: Mapping[str, int], importance: Mapping[str, np.ndarray], note: str) -> PrunePlan:
    """``plan`` with the named groups resized to ``widths`` by importance (:func:`resize`)."""
    keep = dict(plan.keep)
    for group, width in widths.items():
        if width != plan.width(group):
            full = plan.widths[group]
            keep[group] = resize(plan.kept(group), width, _importance_of(importance, group, full), plan.slices.get(group, 1))
    keep = {g: k for g, k in keep.items() if len(k) != plan.widths[g]}
    return PrunePlan(keep, plan.widths, note, plan.slices)


def snap(plan: PrunePlan, staircases: Mapping, importance: Mapping[str, np.ndarray], mode: str = "up") -> PrunePlan:
    """Snap every group that has a staircase (a ``Staircases`` or a dict of GroupStaircase) to the
    width ``mode`` chooses; other groups keep their width. Returns a new plan."""
    if mode not in MODES:
        raise ConfigError(f"snap mode is {mode!r}; valid values: {', '.join(MODES)}")
    if hasattr(staircases, "check_plan"):
        staircases.check_plan(plan)
        staircases = staircases.groups
    widths: Dict[str, int] = {}
    for group, st in staircases.items():
        if group not in plan.widths:
            raise PlanError(f"a staircase names group {group!r}, which the plan's model does not have")
        widths[group] = snap_width(st, plan.width(group), mode)
    return with_widths(plan, widths, importance, f"{plan.note} snapped {mode}".strip())


def round_to_multiple(plan: PrunePlan, groups, importance: Mapping[str, np.ndarray], multiple: int = 8,
                      mode: str = "down") -> PrunePlan:
    """Round each prunable group's width to a multiple of ``multiple`` (or its full width):
    snapping to the staircase of a tile of ``multiple`` channels (:func:`hakd.staircases.tile_staircase`);
    for a group in slices (a grouped conv's), a multiple of both."""
    from hakd.staircases import tile_staircase

    if mode not in ("up", "down"):
        raise ConfigError(f"round_to_multiple mode is {mode!r}; valid values: down, up")
    if isinstance(multiple, bool) or not isinstance(multiple, int) or multiple < 1:
        raise ConfigError(f"round_to_multiple: the multiple must be an integer >= 1, got {multiple!r}")
    stairs = {g.name: tile_staircase(g.name, g.width, math.lcm(multiple, g.slices)) for g in groups.prunable()}
    snapped = snap(plan, stairs, importance, mode)
    return PrunePlan(snapped.keep, snapped.widths, f"{plan.note} rounded {mode} to x{multiple}".strip(), snapped.slices)
