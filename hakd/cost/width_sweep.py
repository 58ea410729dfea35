"""A latency staircase over widths, measured by a :class:`hakd.cost.profile.Profiler`.

The cost model knows kernels and widths only: what a width means (a channel group of a plan,
say) is the caller's ``model_at`` (:mod:`hakd.sweep`). The numerics of the sweep (grid,
refinement, optimal points) are in :mod:`hakd.cost.staircase`.
"""

from __future__ import annotations

from typing import Callable, Dict, List, Optional

from torch import fx

from hakd.cost.lower import Lowered
from hakd.cost.profile import Profiler

__all__ = ["default_grid", "sweep_widths"]


def default_grid(profiler: Profiler) -> int:
    """The adaptive sweep's grid on ``profiler``'s activations: its channel block (16 on AVX-512),
    at least 8 (plain NCHW has no block)."""
    return max(8, profiler.channel_block)


def sweep_widths(profiler: Profiler, model_at: Callable[[int], fx.GraphModule], modules, max_width: int, *,
                 adaptive: bool = True, grid: Optional[int] = None, tol: Optional[float] = None, context: Optional[str] = None,
                 include=(), min_width: int = 1):
    """A latency staircase over widths: :class:`hakd.cost.staircase.Sweep` of the latency (s) of the
    kernel calls that read the weights of any of ``modules`` in ``model_at(width)``.

    The cost model knows kernels and widths only: what a width means (a channel group of a
    plan, say) is ``model_at``'s business (:mod:`hakd.sweep`). ``context``: the cache context
    held at every width (default: that of ``model_at(max_width)``); ``include``: widths
    measured as grid widths besides the grid (e.g. the width a plan has now).

    A full sweep tries every schedule candidate at every width. An adaptive sweep does so
    on its coarse grid only; between two grid widths each kernel tries just the schedules
    that won at those two widths (*schedule transfer*: a kernel's best tile and vector
    rarely change between neighbouring widths, and compiling the losers is most of a
    sweep's cost). Every value is still a measured kernel, deployable as measured; a
    later profile of the pruned model tries all candidates and can only be faster.

    Each kernel timed here is timed a third time (the lowest value kept,
    :meth:`Profiler.retime`): when its width becomes suspect (slower than a wider one, or
    about to be refined as a step), else when the sweep has refined every interval (a full
    sweep: when every width is measured). Its first two timings were back to back, within
    one load burst of a shared machine.

    ``grid``: default the profiler's channel block (16 on AVX-512), at least 8: on blocked
    activations the staircase steps there. With a build pool (``Profiler(build_workers=N)``) the
    kernels of many widths are compiled at once before any is timed: every grid width's, then
    the width just past each rising grid interval (which refining it always measures first).
    """
    from hakd.cost.staircase import DEFAULT_TOLERANCE, adaptive_sweep, full_sweep, grid_points

    modules = set(modules)
    tol = DEFAULT_TOLERANCE if tol is None else tol
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
        from hakd.errors import ConfigError

        raise ConfigError(f"the noise tolerance is a fraction in [0, 1), e.g. 0.04 for 4%; got {tol!r}")
    context = context or profiler.context(profiler.lower(model_at(max_width)))
    grid = grid or default_grid(profiler)
    grid_widths = sorted({*grid_points(max_width, grid, min_width), *(w for w in include if min_width <= w <= max_width)})
    winners: Dict[int, Dict[tuple, str]] = {}  # width -> kernel (its call_modules) -> fastest schedule

    def transferred(w: int):
        if not adaptive or w in grid_widths:
            return None
        below = winners[max(g for g in grid_widths if g < w)]
        above = winners[min(g for g in grid_widths if g > w)]
        return {k: {below.get(k), above.get(k)} - {None} for k in {*below, *above}}

    lowered: Dict[int, tuple] = {}  # width -> (its lowered model, its timing): a width re-measured is not lowered again
    ahead_lows: Dict[int, Lowered] = {}  # width -> its lowered model, kernels built ahead, not yet timed

    def ahead(widths: List[int]) -> None:
        if profiler.pool is None:
            return
        fresh = [w for w in dict.fromkeys(widths) if w not in lowered and w not in ahead_lows]
        for w in fresh:
            ahead_lows[w] = profiler.lower(model_at(w))
        profiler.prepare([(k, cfg) for w in fresh for k in ahead_lows[w].kernels.values()
                          for cfg in profiler.configs(k, (transferred(w) or {}).get(k.call_modules))], context)

    def measure(w: int, retime: bool = False) -> float:
        if w not in lowered:
            low = ahead_lows.pop(w, None) or profiler.lower(model_at(w))
            lowered[w] = (low, profiler.lowered(low, context, transferred(w)))
        low, timing = lowered[w]
        if retime:  # the kernels at w timed in this run: their chosen schedules timed a third time, the lowest kept
            again = [k for k in timing.kernels_of_modules(modules) if profiler.timed_here(low.kernels[k.kernel], k.schedule)]
            for k in again:
                profiler.retime(low.kernels[k.kernel], k.schedule, context, times=3)
            if again:
                lowered[w] = (low, profiler.lowered(low, context, transferred(w)))
                timing = lowered[w][1]
        winners[w] = {k.call_modules: k.schedule for k in timing.kernels}
        return timing.latency_of_modules(modules)

    if not adaptive:
        return full_sweep(measure, max_width, tol, min_width, remeasure=lambda w: measure(w, retime=True), ahead=ahead)
    return adaptive_sweep(measure, max_width, grid, tol, min_width, remeasure=lambda w: measure(w, retime=True),
                          include=include, ahead=ahead)
