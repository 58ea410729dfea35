"""Fit a latency budget on the real model: allocate widths, rebuild, predict, re-sweep, repeat.

Staircases are measured with every other group held (:mod:`hakd.sweep`), so an
allocation over them (:func:`hakd.passes.allocate.allocate`) is a first-order model of
the student: moving two groups that share a layer moves that layer's kernel in a way
neither staircase saw. So each round rebuilds the chosen student, predicts its latency
with the profiler (every fused kernel timed), and, while that prediction is over the
budget, moves the staircases to the new plan (groups whose neighbours moved are swept
again) and allocates again with the overshoot held back (less of it when holding it all
back leaves no choice of widths: the new staircases are exact at their centre; when even
holding nothing back leaves none, back at the previous centre, which it then keeps, holding
back more each round by the response measured there). Once a student fits with room to
spare, it gives the room back by the response measured and allocates again around the same
plan, between the last student that fits and the last that overshot once it has both
(:func:`next_slack`), keeping the best student that fits. The plan returned is one whose *predicted
latency as rebuilt* is within the budget::

    result = fit_budget(prof, gm, groups, fisher_plan, stairs, importance, budget_s=0.6 * teacher_s)
    result.plan, result.predicted_s
"""

from __future__ import annotations

import dataclasses
from typing import Callable, List, Mapping, Optional

import numpy as np
from torch import fx

from hakd.cost.profile import Profiler
from hakd.errors import BudgetError
from hakd.passes.allocate import allocate, allowed_widths, budget_options, check_min_keep, importance_kept
from hakd.passes.counts import count, params_per_channel
from hakd.passes.groups import ChannelGroups
from hakd.passes.rebuild import rebuild
from hakd.passes.snap import with_widths
from hakd.passes.trace import input_shape
from hakd.passes.uniform import uniform_note, uniform_steps, uniform_widths
from hakd.plan import PrunePlan
from hakd.staircases import Staircases
from hakd.sweep import predict, refresh

__all__ = ["BudgetResult", "fit_budget", "fit_uniform", "fastest_plan", "allocate_holding_back", "next_slack"]


@dataclasses.dataclass
class BudgetResult:
    plan: PrunePlan
    predicted_s: float  # the rebuilt student's predicted latency
    budget_s: float
    staircases: Optional[Staircases]  # as last measured (around the last plan tried); None for the uniform fit
    rounds: List[dict]  # per round: what was allocated and what the rebuilt student measured


def fastest_plan(plan: PrunePlan, stairs: Staircases, importance: Mapping[str, np.ndarray],
                 min_keep: float = 0.0) -> PrunePlan:
    """Every group with a staircase at its fastest optimal width (the widest among equals) that
    keeps ``min_keep`` of the group."""
    widths = {g: min(allowed_widths(st, min_keep, plan.slices.get(g, 1)), key=lambda w: (st.at(w), -w))
              for g, st in stairs.groups.items()}
    return with_widths(plan, widths, importance, f"{plan.note} fastest".strip())


def allocate_holding_back(options, capacity_s: float, slack: float, tolerance_s: float, bins: int):
    """Allocate within ``capacity_s - slack``; returns the allocation and the slack held back.

    The overshoot held back was seen around the previous centre, but the staircases are exact
    at their own centre: when holding it all back leaves no choice of widths (the fastest
    options already need more), hold back half as much, then half again, down to nothing."""
    while True:
        try:
            return allocate(options, capacity_s - slack, bins), slack
        except BudgetError:
            if slack <= 0:
                raise
            slack = slack / 2 if slack > tolerance_s else 0.0


def next_slack(points, budget_s: float) -> float:
    """The slack for the next allocation around a centre, from the rounds there so far: ``points``,
    (slack held back, rebuilt student's predicted latency) in order. Aim 0.5% below the budget.

    Holding back (or giving back) one more second moves the student by less than a second where the
    staircases overestimate what a width changes (about 0.6 on MobileNetV2), so the step is scaled by
    the response measured between the last two rounds (1x to 4x; giving back, 0.25x to 4x: either way
    it errs towards a student that fits); moving only by the distance to the budget would approach it
    from one side forever. Once one round fitted and another overshot, the next slack lies in the
    middle half between them::

        >>> round(next_slack([(10.0, 105.0)], 100.0), 3)       # no response measured yet: the overshoot, and 0.5 more
        15.5
        >>> round(next_slack([(10.0, 105.0), (15.0, 102.0)], 100.0), 3)   # 5 held back removed 3: x 5/3
        19.167
        >>> round(next_slack([(0.0, 90.0)], 100.0), 3)         # 9.5 of room: give it back
        -9.5
        >>> round(next_slack([(0.0, 90.0), (-9.5, 101.0)], 100.0), 3)    # overshot: between -9.5 and 0
        -7.125
    """
    slack, predicted = points[-1]
    step = predicted - 0.995 * budget_s
    if len(points) > 1:
        earlier_slack, earlier_predicted = points[-2]
        if (slack - earlier_slack) * (earlier_predicted - predicted) > 0:  # err towards a student that fits
            step *= min(4.0, max(1.0 if step > 0 else 0.25, (slack - earlier_slack) / (earlier_predicted - predicted)))
    proposal = slack + step
    fits = [s for s, p in points if p <= budget_s]
    if fits:
        overs = [s for s, p in points if p > budget_s and s < min(fits)]
        if overs:
            low, high = max(overs), min(fits)
            proposal = min(max(proposal, low + (high - low) / 4), high - (high - low) / 4)
    return proposal


def fit_budget(profiler: Profiler, gm: fx.GraphModule, groups: ChannelGroups, plan: PrunePlan, stairs: Staircases,
               importance: Mapping[str, np.ndarray], budget_s: float, value: str = "importance", max_rounds: int = 5,
               bins: int = 4000, log: Callable[[str], None] = print, save_staircases=None,
               min_keep: float = 0.0) -> BudgetResult:
    """Choose one optimal width per group of ``stairs``, keeping the most ``value`` (the channels'
    importance, or parameters), such that the rebuilt student's predicted latency is within
    ``budget_s``; ``min_keep``: no group keeps less than this fraction of its channels. Raises
    BudgetError (stating the fastest reachable latency) when even every group at its fastest
    width is over the budget."""
    if not budget_s > 0:
        raise BudgetError(f"a latency budget must be > 0 seconds, got {budget_s}")
    check_min_keep(min_keep)
    stairs.check_model(groups.widths())
    sweep = dict(log=log, save_to=save_staircases)
    stairs = refresh(profiler, gm, groups, plan, stairs, **sweep)
    fastest = fastest_plan(plan, stairs, importance, min_keep)
    fastest_s = predict(profiler, gm, groups, fastest)
    if fastest_s > budget_s:
        floor = f" that keeps {min_keep:g} of it (min_keep)" if min_keep else ""
        raise BudgetError(f"a budget of {budget_s * 1e6:.1f} us cannot be met: with every group at its fastest width{floor} "
                          f"the student is predicted at {fastest_s * 1e6:.1f} us, the minimum reachable by pruning these "
                          f"groups on {profiler.target_key}")
    center, slack, rounds, best = plan, 0.0, [], None

    def worth(p: PrunePlan) -> float:  # what the allocation keeps, comparable across centres
        if value == "params":
            return float(count(rebuild(gm, groups, p), input_shape(gm))[0])
        return importance_kept(p, importance, stairs.groups)

    anchor, anchored = None, False  # (centre, staircases) of the last round that found an allocation
    tried = []  # per round: (centre, slack held back, student's predicted latency, widths allocated)
    while len(rounds) < max_rounds:  # rounds of allocation (going back to a centre is none)
        r = len(rounds)
        if best is None and not anchored:  # while over budget, each round moves the staircases to the last student
            stairs = refresh(profiler, gm, groups, center, stairs, **sweep)
        center_s = predict(profiler, gm, groups, center)
        rest = center_s - sum(st.at(center.width(g)) for g, st in stairs.groups.items())  # kernels of no group, minus overlaps
        per_channel = params_per_channel(gm, groups, center, stairs.groups) if value == "params" else None
        options = budget_options(center, stairs.groups, importance, value, per_channel, min_keep)
        try:
            alloc, slack = allocate_holding_back(options, budget_s - rest, slack, 0.01 * budget_s, bins)
        except BudgetError as e:
            if anchor is None or anchor[0] is center:
                log(f"budget round {r + 1}: {e}")
                break
            # the staircases around the student overestimate what its fastest widths cost: from now on
            # allocate around the last centre that had a choice, holding the overshoot back there
            log(f"budget round {r + 1}: around the last student, {e}; back to the previous centre")
            (center, stairs), anchored = anchor, True
            continue
        anchor = (center, stairs)
        student = with_widths(center, alloc.widths, importance, f"{plan.note} budget {budget_s * 1e6:.1f} us".strip())
        student_s = predict(profiler, gm, groups, student)
        rounds.append({"round": r + 1, "allocated_s": rest + alloc.latency_s, "predicted_s": student_s,
                       "held_back_s": slack, "value": alloc.value, "grid_s": alloc.grid_s, "widths": alloc.widths})
        log(f"budget round {r + 1}: allocated {(rest + alloc.latency_s) * 1e6:.1f} us, rebuilt student predicted "
            f"{student_s * 1e6:.1f} us (budget {budget_s * 1e6:.1f} us, held back {slack * 1e6:.1f} us)")
        tried.append((center, slack, student_s, alloc.widths))
        here = [(s, p) for c, s, p, _ in tried if c is center]  # the rounds around this centre, this one last
        repeated = any(w == alloc.widths for c, _, _, w in tried[:-1] if c is center)
        if student_s <= budget_s:
            value_kept = worth(student)
            if best is None or value_kept > best[2]:
                best = (student, student_s, value_kept)
            if budget_s - student_s <= 0.01 * budget_s or repeated:
                break
            slack = next_slack(here, budget_s)  # it fits with room to spare: give some back, around the same centre
        elif best is not None:
            slack = next_slack(here, budget_s)  # giving back overshot: between the student that fits and this one
        elif anchored:  # around the same centre again, holding back more: at least enough that these widths no longer fit
            excluded = budget_s - rounds[-1]["allocated_s"] + 0.001 * budget_s
            slack = max(next_slack(here, budget_s), excluded)
        else:
            slack += student_s - budget_s  # allocate again around the student, holding the overshoot back
            center = student
    if best is not None:
        return BudgetResult(best[0], best[1], budget_s, stairs, rounds)
    log(f"budget: no allocation within {budget_s * 1e6:.1f} us after {len(rounds)} round(s); "
        f"every group at its fastest width ({fastest_s * 1e6:.1f} us)")
    return BudgetResult(fastest, fastest_s, budget_s, stairs, rounds)


def fit_uniform(profiler: Profiler, gm: fx.GraphModule, groups: ChannelGroups, plan: PrunePlan,
                importance: Mapping[str, np.ndarray], budget_s: float, multiple: int = 0,
                log: Callable[[str], None] = print) -> BudgetResult:
    """The simple answer fitted to ``budget_s``: the largest single keep ratio whose student
    (:func:`hakd.passes.uniform.uniform_widths`, rounded up to ``multiple``; 0: the profiler's channel
    block, else the target's vector width) is predicted, rebuilt, within the budget. A bisection over
    the ratios where some width changes, so it assumes latency rises with the ratio: where it does
    not (MobileNetV2: 0.667 predicted 455 us, 0.675 641 us), a wider ratio between the steps it
    skipped may also fit. ``plan``'s kept channels are resized by ``importance``. Raises BudgetError
    when even one multiple per group is over the budget."""
    if not budget_s > 0:
        raise BudgetError(f"a latency budget must be > 0 seconds, got {budget_s}")
    multiple = multiple or profiler.channel_block or profiler.target.channel_block
    steps, rounds, tried = uniform_steps(groups, multiple), [], {}

    def student(i: int):
        if i not in tried:
            p = with_widths(plan, uniform_widths(groups, steps[i], multiple), importance,
                            uniform_note(multiple, steps[i], budget_s))
            tried[i] = p, predict(profiler, gm, groups, p)
            rounds.append({"round": len(rounds) + 1, "fraction": steps[i], "predicted_s": tried[i][1]})
            log(f"uniform x{multiple}: keep {steps[i]:.3f} of every group, predicted {tried[i][1] * 1e6:.1f} us "
                f"(budget {budget_s * 1e6:.1f} us)")
        return tried[i]

    if student(0)[1] > budget_s:
        raise BudgetError(f"a budget of {budget_s * 1e6:.1f} us cannot be met by one keep ratio: with every group at "
                          f"{multiple} channels the student is predicted at {student(0)[1] * 1e6:.1f} us on "
                          f"{profiler.target_key}")
    low, high = 0, len(steps)  # steps[low] fits; steps[high] (if any) does not
    if student(high - 1)[1] <= budget_s:
        low = high - 1
    while high - low > 1:
        mid = (low + high) // 2
        if student(mid)[1] <= budget_s:
            low = mid
        else:
            high = mid
    best, best_s = student(low)
    return BudgetResult(best, best_s, budget_s, None, rounds)
