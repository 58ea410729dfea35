"""Pure numerics of latency staircases: optimal widths and an adaptive sweep.

A width is *optimal* when every wider width is slower by more than the noise
tolerance: it is the widest width of its step (more channels would cost time; fewer
would save none).

>>> curve = {8: 10.0, 9: 15.0, 12: 15.1, 16: 15.2, 17: 21.0, 24: 21.0}
>>> optimal_points(curve, tol=0.03)
[8, 16, 24]
>>> adaptive_sweep(lambda w: 10.0 * ((w + 7) // 8), 64, grid=8).optimal
[8, 16, 24, 32, 40, 48, 56, 64]
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List, Mapping, Optional, Set, Tuple

__all__ = ["optimal_points", "adaptive_sweep", "full_sweep", "grid_points", "Sweep", "DEFAULT_TOLERANCE"]

DEFAULT_TOLERANCE = 0.04  # ~2x the median repeat-to-repeat noise of one thread (NOTES-TVM)


def optimal_points(latency: Mapping[int, float], tol: float = DEFAULT_TOLERANCE) -> List[int]:
    """Widths faster than every wider width by more than ``tol`` (relative), ascending."""
    points, best_wider = [], float("inf")
    for w in sorted(latency, reverse=True):
        if latency[w] * (1 + tol) < best_wider:
            points.append(w)
        best_wider = min(best_wider, latency[w])
    return sorted(points)


@dataclasses.dataclass
class Sweep:
    """Measured latencies by width, widths estimated on measured ramps, and the optimal points."""

    latency: Dict[int, float]
    tol: float
    candidates: Optional[Set[int]] = None  # widths that may be step ends; None: every width of the curve
    estimated: Dict[int, float] = dataclasses.field(default_factory=dict)  # interpolated, not measured
    remeasured: Set[int] = dataclasses.field(default_factory=set)  # suspect widths measured twice (the lower kept)
    confirmed: Set[int] = dataclasses.field(default_factory=set)  # the other measured widths, measured again at the end

    @property
    def evaluations(self) -> int:
        return len(self.latency)

    @property
    def curve(self) -> Dict[int, float]:
        """Every width known: measured ones, and on ramps the linear interpolation between them."""
        return {**self.estimated, **self.latency}

    @property
    def optimal(self) -> List[int]:
        points = optimal_points(self.curve, self.tol)
        return points if self.candidates is None else [w for w in points if w in self.candidates]

    def in_units(self, k: int) -> "Sweep":
        """This sweep with every width multiplied by ``k``: a sweep over units of k channels.

        >>> Sweep({1: 1.0, 2: 2.0}, 0.0).in_units(4).latency
        {4: 1.0, 8: 2.0}
        """
        scale = lambda d: {w * k: v for w, v in d.items()}
        return Sweep(scale(self.latency), self.tol, None if self.candidates is None else {w * k for w in self.candidates},
                     scale(self.estimated), {w * k for w in self.remeasured}, {w * k for w in self.confirmed})


def full_sweep(measure: Callable[[int], float], max_width: int, tol: float = DEFAULT_TOLERANCE, min_width: int = 1,
               remeasure: Optional[Callable[[int], float]] = None, ahead: Optional[Callable[[List[int]], None]] = None,
               batch: int = 32) -> Sweep:
    """Measure every width from ``min_width`` to ``max_width``; with ``remeasure``, every width
    once more when all are measured, the lower value kept (as :func:`adaptive_sweep` confirms).
    ``ahead(widths)``, when given, is told the next ``batch`` widths before they are measured.

    >>> full_sweep(lambda w: 10.0 * w, 3, remeasure=lambda w: 9.0 * w).latency
    {1: 9.0, 2: 18.0, 3: 27.0}
    """
    latency = {}
    for start in range(min_width, max_width + 1, batch):
        widths = list(range(start, min(start + batch, max_width + 1)))
        if ahead is not None:
            ahead(widths)
        latency.update((w, measure(w)) for w in widths)
    confirmed = set(latency) if remeasure is not None else set()
    for w in sorted(confirmed):
        latency[w] = min(latency[w], remeasure(w))
    return Sweep(latency, tol, confirmed=confirmed)


def grid_points(max_width: int, grid: int = 8, min_width: int = 1) -> List[int]:
    """The coarse grid an adaptive sweep measures first: multiples of ``grid`` and both ends.

    >>> grid_points(20, 8)
    [1, 8, 16, 20]
    """
    return sorted({min_width, max_width, *range(max(grid, min_width), max_width + 1, grid)})


def adaptive_sweep(measure: Callable[[int], float], max_width: int, grid: int = 8, tol: float = DEFAULT_TOLERANCE,
                   min_width: int = 1, remeasure: Optional[Callable[[int], float]] = None, include=(),
                   ahead: Optional[Callable[[List[int]], None]] = None) -> Sweep:
    """Find the optimal points with far fewer measurements than :func:`full_sweep`.

    Measures a coarse grid (multiples of ``grid``, the schedules' channel tile, plus the
    ends and the widths in ``include``), then refines each interval [a, b] whose latency rises by more than ``tol``:

    - a *step just past a*, when a + 1 already lies within ``tol`` of b: a tiled schedule
      adds a tile just past a multiple of its tile, so a + 1 is measured first, and when
      it is, the widths up to b are interpolated from it (one measurement; a dip inside
      such an interval would be missed);
    - a *ramp* when both its midpoint and a + 1 lie within ``tol`` of the line from a to
      b, or nearer it than to either end's level: the widths inside are interpolated (on
      a ramp steeper than ``tol`` per channel every width is its own step end);
    - otherwise a *step* somewhere inside: both halves are refined the same way, which
      finds the widest width of each lower level as a binary search would.

    A flat interval needs nothing: no width inside it can be optimal. Candidates for
    optimal points are the widths whose right neighbour is known (measured or
    interpolated), so that their step end is established.

    With ``remeasure`` (which re-times a width without compiling), every measured width is
    measured once more, keeping the lower value (a load burst on a shared machine only
    adds time). Suspect widths are, at once (a spike would be refined as a step, costing
    compiles): a width slower than a wider one by more than ``tol``, and the measured
    widths of an interval before it is refined as a step. The others are *confirmed* once
    every interval is refined, minutes after their first measurement on a deep model,
    outside the burst that may have slowed it; then the intervals are refined again on the
    lower values (measuring the widths a changed decision needs, confirmed in turn) until
    no decision changes, and the ramps are interpolated between the final values.

    ``ahead(widths)``, when given, is told the widths about to be measured in a batch (the
    grid; then the width just past each rising interval, which refining it measures first),
    so that their kernels can be compiled together (:class:`hakd.cost.build_pool.BuildPool`).

    >>> ramp = adaptive_sweep(lambda w: 100.0 + 20.0 * w, 16, grid=8)  # 5% or more per channel
    >>> ramp.evaluations, ramp.optimal == list(range(1, 17))
    (7, True)
    """
    latency: Dict[int, float] = {}
    lines: List[Tuple[int, int, List[int]]] = []  # (a, b, widths between them estimated on the line from a to b)
    remeasured: Set[int] = set()
    confirmed: Set[int] = set()

    def at(w: int) -> float:
        if w not in latency:
            latency[w] = measure(w)
        return latency[w]

    def again(w: int) -> None:  # measure once more, keep the lower: a load burst only adds time
        if remeasure is not None and w not in remeasured | confirmed:
            remeasured.add(w)
            latency[w] = min(latency[w], remeasure(w))

    def settle(w: int, wider: int) -> None:
        if at(w) > at(wider) * (1 + tol):
            again(w)

    def on_line(a: int, b: int, w: int) -> bool:
        line = at(a) + (at(b) - at(a)) * (w - a) / (b - a)
        return abs(at(w) - line) <= max(tol * line, 0.5 * min(abs(at(w) - at(a)), abs(at(b) - at(w))))

    def is_ramp(a: int, b: int, mid: int) -> bool:
        return on_line(a, b, mid) and on_line(a, b, a + 1)

    def refine(a: int, b: int) -> None:
        if b - a <= 1 or at(b) <= at(a) * (1 + tol):
            return
        settle(a + 1, b)
        if at(a + 1) * (1 + tol) >= at(b):  # the step is just past a
            lines.append((a + 1, b, list(range(a + 2, b))))
            return
        mid = (a + b) // 2
        at(mid)
        settle(mid, b)
        if b - a > 3:
            if not is_ramp(a, b, mid):  # before refining it as a step, what was measured here is measured again
                for w in (a, a + 1, mid, b):
                    again(w)
            if is_ramp(a, b, mid):  # tested again: the lower values may make it one
                lines.append((a, b, [w for w in range(a + 2, b) if w != mid]))
                return
        refine(a, mid)
        refine(mid, b)

    grid_widths = sorted({*grid_points(max_width, grid, min_width), *(w for w in include if min_width <= w <= max_width)})
    while True:  # refined until confirming changes no decision: a warm sweep (every value final) decides the same
        lines.clear()
        if ahead is not None:
            ahead([w for w in grid_widths if w not in latency])
        for w in grid_widths:
            at(w)
        for a, b in reversed(list(zip(grid_widths, grid_widths[1:]))):  # widest first: each compared with a settled one
            settle(a, b)
        if ahead is not None:
            ahead([a + 1 for a, b in zip(grid_widths, grid_widths[1:])
                   if b - a > 1 and a + 1 not in latency and at(b) > at(a) * (1 + tol)])
        for a, b in zip(grid_widths, grid_widths[1:]):
            refine(a, b)
        fresh = set(latency) - remeasured - confirmed if remeasure is not None else set()
        if not fresh:
            break
        for w in sorted(fresh):
            confirmed.add(w)
            latency[w] = min(latency[w], remeasure(w))
    estimated = {w: at(a) + (at(b) - at(a)) * (w - a) / (b - a) for a, b, widths in lines for w in widths}
    known = {*latency, *estimated}
    candidates = {w for w in known if w + 1 in known or w == max_width} | set(grid_widths)
    return Sweep(latency, tol, candidates, estimated, remeasured, confirmed)
