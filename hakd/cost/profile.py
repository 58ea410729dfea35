"""Measure models and channel-group staircases with hakd's own kernels.

A :class:`Profiler` owns a target, a device runner and a latency table. For each
fused kernel it tries every schedule candidate (reusing table rows first), records
each timing, and takes the fastest (timed once more, the lower value kept: a load burst
must not stay in the table): the very schedule :mod:`hakd.export` deploys.
Kernels are timed in the cache context of the model they belong to
(:func:`hakd.cost.measure.cache_context`), and the runtime's cost per kernel call
(:mod:`hakd.cost.dispatch`) is measured once per target and added per call::

    prof = Profiler("host", table=LatencyTable(":memory:"))
    timing = prof.model(trace(resnet20(), torch.zeros(1, 3, 32, 32)))
    timing.latency_s
"""

from __future__ import annotations

import dataclasses
import shutil
import tempfile
import warnings
import weakref
from collections import OrderedDict
from typing import Callable, Dict, List, Mapping, Optional, Set

from torch import fx

from hakd.cost.dispatch import CHAIN, SHAPE, SIGNATURE, build_chain
from hakd.cost.lower import Kernel, Lowered, lower
from hakd.cost.measure import MeasureConfig, Measurement, build_kernel, make_runner
from hakd.cost.schedules import TUNABLE, TUNED, ScheduleConfig, ScheduleError, apply_schedule, candidates
from hakd.cost.table import DEFAULT_TABLE, LatencyTable
from hakd.cost.target import parse_device, parse_target
from hakd.errors import HakdError

__all__ = ["Profiler", "KernelTiming", "ModelTiming", "ProfileError", "sweep_widths"]


class ProfileError(HakdError):
    """No schedule of a kernel could be built and timed."""


@dataclasses.dataclass(frozen=True)
class KernelTiming:
    kernel: str
    signature: str
    schedule: str
    latency_s: float
    noise: float
    call_modules: tuple = ()  # per call, the fx modules whose weights it reads

    @property
    def calls(self) -> int:
        return len(self.call_modules)


@dataclasses.dataclass
class ModelTiming:
    """Predicted latency of a lowered model: the sum over fused kernels of (latency + the
    runtime's cost of a call) x calls, every kernel timed in cache context ``context``."""

    kernels: List[KernelTiming]
    call_overhead_s: float = 0.0
    context: str = "warm"

    @property
    def latency_s(self) -> float:
        return sum((k.latency_s + self.call_overhead_s) * k.calls for k in self.kernels)

    def latency_of_modules(self, modules) -> float:
        """Latency of the kernel calls that read the weights of any of ``modules``."""
        modules = set(modules)
        return sum(k.latency_s + self.call_overhead_s for k in self.kernels for call in k.call_modules if modules & set(call))

    def kernels_of_modules(self, modules) -> List[KernelTiming]:
        """The kernels with a call that reads the weights of any of ``modules``."""
        modules = set(modules)
        return [k for k in self.kernels if any(modules & set(call) for call in k.call_modules)]


class Profiler:
    """Times fused kernels on ``target`` (here, or on ``device="rpc://HOST:PORT/KEY"``).

    ``compiles`` and ``table_hits`` count the work done, for benchmarks.
    """

    def __init__(self, target="host", device=None, table=None, measure: MeasureConfig = MeasureConfig(), tune_trials: int = 0,
                 channel_block: Optional[int] = None):
        self.target = parse_target(target)
        # activations between kernels in NCHW{b}c, b the target's vector width (0: plain NCHW)
        self.channel_block = self.target.channel_block if channel_block is None else int(channel_block)
        self.device = parse_device(device)
        self.measure = measure
        self.runner = make_runner(self.target, self.device, measure)
        self.table = table if isinstance(table, LatencyTable) else LatencyTable(table or DEFAULT_TABLE)
        self.compiles = 0
        self.table_hits = 0
        self._built: "OrderedDict[tuple, object]" = OrderedDict()  # (signature, schedule) -> the last libraries built
        self._winners: "OrderedDict[tuple, object]" = OrderedDict()  # the last winners' libraries, kept longer: a
        # sweep times each once more at its end (about 0.7 MiB each)
        self._timings: Dict[tuple, int] = {}  # (signature, schedule, context) -> times timed by this profiler
        self._timed: Set[tuple] = set()  # (signature, schedule) built and timed by this profiler
        self.tuner = None
        if tune_trials:  # meta_schedule's database lives beside the table
            from hakd.config import ConfigError
            from hakd.cost.tune import Tuner

            if self.device.kind != "local":
                raise ConfigError(f"tune_trials: meta_schedule tunes on this host only, not on {self.device}; "
                                  "profile the board without tuning, or tune on the board itself")

            if self.table.path != ":memory:":
                folder = self.table.path + ".tuning"
            else:  # an in-memory table's tuning lives as long as the profiler
                folder = tempfile.mkdtemp(prefix="hakd-tuning-")
                weakref.finalize(self, shutil.rmtree, folder, True)
            self.tuner = Tuner(folder, self.target, tune_trials, measure.threads)

    @property
    def target_key(self) -> str:
        """The target's key, and the channel block when it is not the target's own (other kernels)."""
        own = self.channel_block == self.target.channel_block
        return self.target.key() + ("" if own else f" -channel-block={self.channel_block}")

    def time_config(self, kernel: Kernel, cfg: ScheduleConfig, context: str = "warm") -> Measurement:
        """One schedule of one kernel in one cache context: from the table, or built, timed and recorded."""
        known = self.table.lookup(self.target_key, kernel.signature, cfg.key(), self.measure.threads, context=context)
        if known is not None:
            self.table_hits += 1
            return known
        try:
            lib, compile_s = self._build(kernel, cfg)
        except Exception as e:  # a template that does not fit (ScheduleError) or fails to build
            m = Measurement(error=f"build failed: {type(e).__name__}: {str(e)[:300]}")
        else:
            m = self.runner.time(lib, kernel.shapes, compile_s, context=context, hot=kernel.activation_args or (0,),
                                 dtypes=kernel.dtypes)
            self._timings[(kernel.signature, cfg.key(), context)] = 1
        self.table.record(self.target_key, kernel.signature, cfg.key(), self.measure.threads, m, str(self.device), context=context)
        return m

    def retime(self, kernel: Kernel, schedule: str, context: str, times: int = 2) -> Measurement:
        """Time a recorded schedule of a kernel once more and keep the lower value (load on a
        shared machine only adds time), unless this profiler has timed it ``times`` times in
        this context already: a warm sweep in the same process times nothing. Rebuilds only if
        the library is no longer kept."""
        cfg, key = ScheduleConfig.from_key(schedule), (self.target_key, kernel.signature, schedule, self.measure.threads)
        old = self.table.lookup(*key, context=context)
        timed = (kernel.signature, schedule, context)
        if self._timings.get(timed, 0) >= times and old is not None and old.ok:
            return old
        self._timings[timed] = self._timings.get(timed, 0) + 1
        lib = self._winners.get((kernel.signature, schedule), self._built.get((kernel.signature, schedule)))
        compile_s = old.compile_s if old is not None else 0.0
        if lib is None:
            lib, compile_s = self._build(kernel, cfg)
        m = self.runner.time(lib, kernel.shapes, compile_s, context=context, hot=kernel.activation_args or (0,),
                             dtypes=kernel.dtypes)
        if old is not None and old.ok and (not m.ok or old.latency_s <= m.latency_s):
            return old
        self.table.record(*key, m, str(self.device), context=context)
        return m

    def timed_here(self, kernel: Kernel, schedule: str) -> bool:
        """Was this schedule of ``kernel`` built (and timed) by this profiler, rather than read from the table?
        A table value already had its second timing in the run that measured it."""
        return (kernel.signature, schedule) in self._timed

    def _build(self, kernel: Kernel, cfg: ScheduleConfig):
        lib, compile_s = build_kernel(self.schedule(kernel.func, cfg), self.target)
        self.compiles += 1
        self._built[(kernel.signature, cfg.key())] = lib
        self._timed.add((kernel.signature, cfg.key()))
        if len(self._built) > 64:
            self._built.popitem(last=False)
        return lib, compile_s

    def schedule(self, func, cfg: ScheduleConfig):
        """``func`` scheduled as ``cfg`` says: a hakd template, or a kernel tuned by meta_schedule."""
        if cfg.template == TUNED:
            if self.tuner is None:
                raise ProfileError(f"schedule {cfg.key()} was tuned by meta_schedule: create the Profiler with tune_trials")
            return self.tuner.apply(func, cfg)
        return apply_schedule(func, cfg)

    def candidates(self, kernel: Kernel) -> List[ScheduleConfig]:
        """hakd's template candidates, plus the meta_schedule-tuned one when tuning is on."""
        configs = candidates(kernel.func)
        if self.tuner is not None and kernel.kind in TUNABLE:
            try:
                configs.append(self.tuner.candidate(kernel.func))
            except ScheduleError as e:  # tuning found nothing valid: the templates still compete
                warnings.warn(f"kernel {kernel.name}: {e}; keeping hakd's templates only")
        return configs

    def kernel(self, kernel: Kernel, context: str = "warm", only=None) -> KernelTiming:
        """The fastest schedule of a kernel (every candidate timed once, ever, per table and context;
        a winner built in this run timed once more, the lower value kept: :meth:`retime`).

        ``only``: schedule keys to try (others skipped); where none applies (tiles follow the
        channel count), the candidates of their templates; all when none of those applies."""
        configs = self.candidates(kernel)
        if only:
            templates = {ScheduleConfig.from_key(k).template for k in only}
            configs = ([c for c in configs if c.key() in only] or [c for c in configs if c.template in templates]
                       or configs)
        results = [(cfg, self.time_config(kernel, cfg, context)) for cfg in configs]
        ok = [(cfg, m) for cfg, m in results if m.ok]
        if not ok:
            errors = "; ".join(f"{cfg.key()}: {m.error}" for cfg, m in results)
            raise ProfileError(f"no schedule of kernel {kernel.name} ({kernel.signature}) could be timed on "
                               f"{self.target_key} at {self.device}: {errors}")
        cfg, m = min(ok, key=lambda x: (x[1].latency_s, x[0].key()))  # ties (timer resolution) as LatencyTable.best
        won = (kernel.signature, cfg.key())
        if won in self._built:
            self._winners[won] = self._built[won]
            self._winners.move_to_end(won)
            if len(self._winners) > 512:
                self._winners.popitem(last=False)
            if self._timings.get((*won, context), 0) < 2:
                m = self.retime(kernel, cfg.key(), context)  # a winner timed in this run is timed twice: a load
                # burst must not stay in the table
        return KernelTiming(kernel.name, kernel.signature, cfg.key(), m.latency_s, m.noise, kernel.call_modules)

    def context(self, low: Lowered) -> str:
        """The cache context this profiler times ``low``'s kernels in."""
        return self.runner.context(low.footprint_bytes)

    def call_overhead(self) -> float:
        """Seconds the deployed runtime spends per kernel call besides the kernel (measured once per table)."""
        key = (self.target_key, SIGNATURE, "vm", self.measure.threads)
        m = self.table.lookup(*key)
        if m is None:
            m = self.runner.time_vm(build_chain(self.target.tvm_target()), SHAPE)
            self.compiles += 1
            self.table.record(*key, m, str(self.device))
        if not m.ok:
            raise ProfileError(f"the runtime's cost per kernel call could not be measured on {self.target_key} "
                               f"at {self.device}: {m.error}")
        return m.latency_s / CHAIN

    def lowered(self, low: Lowered, context: Optional[str] = None, only: Optional[Mapping[tuple, Set[str]]] = None) -> ModelTiming:
        """Predicted latency of a lowered model; kernels timed in ``context`` (default: the model's own).

        ``only``: per kernel (keyed by its ``call_modules``), the schedule keys to try."""
        context, only = context or self.context(low), only or {}
        kernels = [self.kernel(k, context, only.get(k.call_modules)) for k in low.kernels.values()]
        return ModelTiming(kernels, self.call_overhead(), context)

    def lower(self, gm: fx.GraphModule, input_shape=None, bind_params: bool = False) -> Lowered:
        """``gm`` lowered as this profiler's target runs it (its channel block)."""
        return lower(gm, input_shape, bind_params, self.channel_block)

    def model(self, gm: fx.GraphModule, input_shape=None, context: Optional[str] = None, only=None) -> ModelTiming:
        """Predicted latency of a traced model, batch as in its example input."""
        return self.lowered(self.lower(gm, input_shape), context, only)


def sweep_widths(profiler: Profiler, model_at: Callable[[int], fx.GraphModule], modules, max_width: int, *,
                 adaptive: bool = True, grid: int = 8, tol: Optional[float] = None, context: Optional[str] = None,
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
    """
    from hakd.cost.staircase import DEFAULT_TOLERANCE, adaptive_sweep, full_sweep, grid_points

    modules = set(modules)
    tol = DEFAULT_TOLERANCE if tol is None else tol
    if isinstance(tol, bool) or not isinstance(tol, (int, float)) or not 0 <= tol < 1:
        from hakd.errors import ConfigError

        raise ConfigError(f"the noise tolerance is a fraction in [0, 1), e.g. 0.04 for 4%; got {tol!r}")
    context = context or profiler.context(profiler.lower(model_at(max_width)))
    grid_widths = sorted({*grid_points(max_width, grid, min_width), *(w for w in include if min_width <= w <= max_width)})
    winners: Dict[int, Dict[tuple, str]] = {}  # width -> kernel (its call_modules) -> fastest schedule

    def transferred(w: int):
        if not adaptive or w in grid_widths:
            return None
        below = winners[max(g for g in grid_widths if g < w)]
        above = winners[min(g for g in grid_widths if g > w)]
        return {k: {below.get(k), above.get(k)} - {None} for k in {*below, *above}}

    lowered: Dict[int, tuple] = {}  # width -> (its lowered model, its timing): a width re-measured is not lowered again

    def measure(w: int, retime: bool = False) -> float:
        if w not in lowered:
            low = profiler.lower(model_at(w))
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
        return full_sweep(measure, max_width, tol, min_width, remeasure=lambda w: measure(w, retime=True))
    return adaptive_sweep(measure, max_width, grid, tol, min_width, remeasure=lambda w: measure(w, retime=True),
                          include=include)
