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
from typing import Callable, Dict, List, Mapping, Optional, Set

__all__ = ["optimal_points", "adaptive_sweep", "full_sweep", "Sweep", "DEFAULT_TOLERANCE"]

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
    """Measured latencies by width and the optimal points among them."""

    latency: Dict[int, float]
    tol: float
    candidates: Optional[Set[int]] = None  # widths that may be step ends; None: every measured width

    @property
    def evaluations(self) -> int:
        return len(self.latency)

    @property
    def optimal(self) -> List[int]:
        points = optimal_points(self.latency, self.tol)
        return points if self.candidates is None else [w for w in points if w in self.candidates]


def full_sweep(measure: Callable[[int], float], max_width: int, tol: float = DEFAULT_TOLERANCE, min_width: int = 1) -> Sweep:
    """Measure every width from ``min_width`` to ``max_width``."""
    return Sweep({w: measure(w) for w in range(min_width, max_width + 1)}, tol)


def adaptive_sweep(measure: Callable[[int], float], max_width: int, grid: int = 8, tol: float = DEFAULT_TOLERANCE,
                   min_width: int = 1) -> Sweep:
    """Find the optimal points with far fewer measurements than :func:`full_sweep`.

    Measures a coarse grid (multiples of ``grid``, the schedules' channel tile, plus the
    ends); where latency jumps between two grid points by more than ``tol``, binary
    search finds the widest width still on the lower step. Only grid points and the
    steps' ends found so are candidates for optimal points (a bisection midpoint is not).
    """
    latency: Dict[int, float] = {}

    def at(w: int) -> float:
        if w not in latency:
            latency[w] = measure(w)
        return latency[w]

    grid_points = sorted({min_width, max_width, *range(max(grid, min_width), max_width + 1, grid)})
    for w in grid_points:
        at(w)
    candidates = set(grid_points)
    for a, b in zip(grid_points, grid_points[1:]):
        level = at(a) * (1 + tol)
        if at(b) <= level or b - a <= 1:
            continue
        lo, hi = a, b  # at(lo) within the level, at(hi) above it
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if at(mid) <= level:
                lo = mid
            else:
                hi = mid
        candidates.add(lo)
    return Sweep(latency, tol, candidates)
