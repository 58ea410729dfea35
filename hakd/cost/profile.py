"""Measure models and channel-group staircases with hakd's own kernels.

A :class:`Profiler` owns a target, a device runner and a latency table. For each
fused kernel it tries every schedule candidate (reusing table rows first), records
each timing, and takes the fastest (timed once more, the lower value kept: a load burst
must not stay in the table): the very schedule :mod:`hakd.export` deploys.
Kernels are timed in the cache context of the model they belong to
(:mod:`hakd.cost.cache_context`): a kernel's first call in an inference in the model's reuse
context, its later calls (if any) in the repeat context, where its code is warm. The runtime's
cost per kernel call (:mod:`hakd.cost.dispatch`) is measured once per target and added per call::

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
from typing import Dict, Iterable, List, Mapping, Optional, Sequence, Set, Tuple

from torch import fx

from hakd.cost.dispatch import CHAIN, SHAPE, SIGNATURE, build_chain
from hakd.cost.lower import Kernel, Lowered, lower
from hakd.cost.build_pool import MIN_BATCH, BuildPool
from hakd.cost.measure import LocalRunner, MeasureConfig, Measurement, TimingJob, build_kernel, make_runner, repeat_context
from hakd.cost.schedules import TUNABLE, TUNED, ScheduleConfig, ScheduleError, apply_schedule, candidates
from hakd.cost.steady import SteadyClock
from hakd.cost.table import DEFAULT_TABLE, LatencyTable
from hakd.cost.target import parse_device, parse_target
from hakd.errors import HakdError

__all__ = ["Profiler", "KernelTiming", "ModelTiming", "ProfileError", "PREDICTION"]

# How a model's latency is summed from its kernels' timings (staircases hold it: another sum, measured again):
# 1: every call as a kernel's first in an inference; 2: a kernel's later calls timed in its repeat context.
PREDICTION = 2


class ProfileError(HakdError):
    """No schedule of a kernel could be built and timed."""


@dataclasses.dataclass(frozen=True)
class KernelTiming:
    """One fused kernel's deployed schedule and its latency: ``latency_s`` for its first call in an
    inference, ``repeat_s`` for each later one (None: timed as the first)."""

    kernel: str
    signature: str
    schedule: str
    latency_s: float
    noise: float
    call_modules: tuple = ()  # per call in program order, the fx modules whose weights it reads
    repeat_s: Optional[float] = None

    @property
    def calls(self) -> int:
        return len(self.call_modules)

    def call_s(self, i: int) -> float:
        """Seconds of the kernel's ``i``-th call in an inference (from 0).

        >>> k = KernelTiming("conv", "sig", "tile", 2e-5, 0.01, (("a",), ("b",)), repeat_s=1.5e-5)
        >>> k.call_s(0), k.call_s(1)
        (2e-05, 1.5e-05)
        """
        return self.latency_s if i == 0 or self.repeat_s is None else self.repeat_s


@dataclasses.dataclass
class ModelTiming:
    """Predicted latency of a lowered model: the sum over its kernel calls of (the call's latency
    + the runtime's cost of a call), kernels timed in cache context ``context`` (later calls of a
    kernel in its repeat context)."""

    kernels: List[KernelTiming]
    call_overhead_s: float = 0.0
    context: str = "warm"

    @property
    def latency_s(self) -> float:
        return sum(k.call_s(i) + self.call_overhead_s for k in self.kernels for i in range(k.calls))

    def latency_of_modules(self, modules) -> float:
        """Latency of the kernel calls that read the weights of any of ``modules``."""
        modules = set(modules)
        return sum(k.call_s(i) + self.call_overhead_s for k in self.kernels
                   for i, call in enumerate(k.call_modules) if modules & set(call))

    def kernels_of_modules(self, modules) -> List[KernelTiming]:
        """The kernels with a call that reads the weights of any of ``modules``."""
        modules = set(modules)
        return [k for k in self.kernels if any(modules & set(call) for call in k.call_modules)]


class Profiler:
    """Times fused kernels on ``target`` (here, or on ``device="rpc://HOST:PORT/KEY"``).

    ``compiles`` and ``table_hits`` count the work done, for benchmarks.
    """

    def __init__(self, target="host", device=None, table=None, measure: MeasureConfig = MeasureConfig(), tune_trials: int = 0,
                 channel_block: Optional[int] = None, build_workers: int = 1):
        self.target = parse_target(target)
        # activations between kernels in NCHW{b}c, b the target's vector width (0: plain NCHW)
        self.channel_block = self.target.channel_block if channel_block is None else int(channel_block)
        self.device = parse_device(device)
        self.measure = measure
        self.runner = make_runner(self.target, self.device, measure)
        self.table = table if isinstance(table, LatencyTable) else LatencyTable(table or DEFAULT_TABLE)
        if isinstance(self.runner, LocalRunner):  # a shared host: no timing in a slow spell (a board is the user's own)
            self.runner.steady = SteadyClock(self.target, self.table, self.target_key, measure.threads)
        self.compiles = 0
        self.table_hits = 0
        # kernels compiled in worker processes (build_workers > 1), timed here one at a time
        self.pool = BuildPool(self.target, build_workers) if build_workers != 1 else None
        self._ready: Dict[tuple, object] = {}  # (signature, schedule) -> built ahead by the pool (or its error), not yet timed
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
        return self.time_configs([(kernel, cfg)], context)[(kernel.signature, cfg.key())]

    def time_configs(self, pairs: Sequence[Tuple[Kernel, ScheduleConfig]], context: str = "warm") -> Dict[tuple, Measurement]:
        """Each (kernel, schedule) in ``context``, keyed by (signature, schedule key): from the table,
        or built (all of them first, in the pool when there is one), then timed (one at a time
        here, on every board at once through a tracker) and recorded as each finishes."""
        out: Dict[tuple, Measurement] = {}
        todo: Dict[tuple, Tuple[Kernel, ScheduleConfig]] = {}
        for kernel, cfg in pairs:
            key = (kernel.signature, cfg.key())
            if key in out or key in todo:
                continue
            known = self.table.lookup(self.target_key, kernel.signature, cfg.key(), self.measure.threads, context=context)
            if known is not None:
                self.table_hits += 1
                out[key] = known
            else:
                todo[key] = (kernel, cfg)
        if todo:
            self.runner.check()  # an unreachable board is said before anything is built for it
        self.prepare(todo.values(), context)
        jobs, timed = [], []
        for key, (kernel, cfg) in todo.items():
            try:
                lib, compile_s = self._kept(kernel, cfg) or self._build(kernel, cfg)
            except Exception as e:  # a template that does not fit (ScheduleError) or fails to build
                out[key] = self._record(kernel, cfg, context, Measurement(error=_build_error(e)))
                continue
            jobs.append(TimingJob(lib, kernel.shapes, compile_s, getattr(lib, "entry", "main"), context,
                                  kernel.hot_args, kernel.dtypes))
            timed.append((key, kernel, cfg))

        def done(i: int, m: Measurement) -> None:  # recorded as each finishes: an interrupted batch keeps them
            key, kernel, cfg = timed[i]
            self._timings[(*key, context)] = 1
            out[key] = self._record(kernel, cfg, context, m)

        self.runner.time_many(jobs, done)
        return out

    def _record(self, kernel: Kernel, cfg: ScheduleConfig, context: str, m: Measurement) -> Measurement:
        self.table.record(self.target_key, kernel.signature, cfg.key(), self.measure.threads, m, str(self.device), context=context)
        return m

    def prepare(self, pairs: Iterable[Tuple[Kernel, ScheduleConfig]], context: str = "warm") -> None:
        """Build ahead, in the pool (``build_workers`` > 1), every (kernel, schedule) that is neither
        in the table in ``context`` nor built already (when there are at least ``MIN_BATCH`` of them);
        :meth:`time_configs` then only times them."""
        if self.pool is None:
            return
        todo: Dict[tuple, Tuple[object, str]] = {}
        for kernel, cfg in pairs:
            key = (kernel.signature, cfg.key())
            if cfg.template == TUNED or key in todo or key in self._ready or key in self._built:
                continue
            if self.table.lookup(self.target_key, kernel.signature, cfg.key(), self.measure.threads, context=context) is None:
                todo[key] = (kernel.func, cfg.key())
        if len(todo) >= MIN_BATCH:  # fewer build as fast here
            self._ready.update(zip(todo, self.pool.build(list(todo.values()))))

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
        kept, compile_s = self._kept(kernel, cfg), old.compile_s if old is not None else 0.0
        if kept is not None:
            lib = kept[0]
        else:
            lib, compile_s = self._build(kernel, cfg)
            self._trim()
        m = self.runner.time(lib, kernel.shapes, compile_s, getattr(lib, "entry", "main"), context,
                             kernel.hot_args, kernel.dtypes)
        if old is not None and old.ok and (not m.ok or old.latency_s <= m.latency_s):
            return old
        self.table.record(*key, m, str(self.device), context=context)
        return m

    def timed_here(self, kernel: Kernel, schedule: str) -> bool:
        """Was this schedule of ``kernel`` built (and timed) by this profiler, rather than read from the table?
        A table value already had its second timing in the run that measured it."""
        return (kernel.signature, schedule) in self._timed

    def _kept(self, kernel: Kernel, cfg: ScheduleConfig):
        """(library, 0.0) when this profiler still keeps it built (timed in another context), else None."""
        key = (kernel.signature, cfg.key())
        lib = self._winners.get(key, self._built.get(key))
        return (lib, 0.0) if lib is not None else None

    def _build(self, kernel: Kernel, cfg: ScheduleConfig):
        """(library, compile seconds): built ahead by the pool (:meth:`prepare`), else built here
        (also when its build worker died)."""
        ready = self._ready.pop((kernel.signature, cfg.key()), None)
        if isinstance(ready, str):  # the pool could not build it
            raise ProfileError(ready)
        lib, compile_s = (ready, ready.compile_s) if ready is not None else build_kernel(self.schedule(kernel.func, cfg), self.target)
        self.compiles += 1
        self._built[(kernel.signature, cfg.key())] = lib
        self._timed.add((kernel.signature, cfg.key()))
        return lib, compile_s

    def _trim(self) -> None:
        """Drop the oldest libraries beyond the last 64 built (after a batch: its winners are kept)."""
        while len(self._built) > 64:
            self._built.popitem(last=False)

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

    def configs(self, kernel: Kernel, only=None) -> List[ScheduleConfig]:
        """The candidates :meth:`kernel` tries: all, or those in ``only`` (see there)."""
        configs = self.candidates(kernel)
        if only:
            templates = {ScheduleConfig.from_key(k).template for k in only}
            configs = ([c for c in configs if c.key() in only] or [c for c in configs if c.template in templates]
                       or configs)
        return configs

    def kernel(self, kernel: Kernel, context: str = "warm", only=None) -> KernelTiming:
        """The fastest schedule of a kernel (every candidate timed once, ever, per table and context;
        a winner built in this run timed once more, the lower value kept: :meth:`retime`).

        ``only``: schedule keys to try (others skipped); where none applies (tiles follow the
        channel count), the candidates of their templates; all when none of those applies."""
        return self.kernels([(kernel, only)], context)[0]

    def kernels(self, items: Sequence[Tuple[Kernel, Optional[Set[str]]]], context: str = "warm") -> List[KernelTiming]:
        """:meth:`kernel` of each (kernel, only) of ``items``, their candidates built and timed as one batch."""
        configs = [self.configs(kernel, only) for kernel, only in items]
        measured = self.time_configs([(kernel, cfg) for (kernel, _), cfgs in zip(items, configs) for cfg in cfgs], context)
        fastest = [self._fastest(kernel, cfgs, measured, context) for (kernel, _), cfgs in zip(items, configs)]
        self._trim()
        return fastest

    def _fastest(self, kernel: Kernel, configs: List[ScheduleConfig], measured: Mapping[tuple, Measurement],
                 context: str) -> KernelTiming:
        results = [(cfg, measured[(kernel.signature, cfg.key())]) for cfg in configs]
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
        kernels = self.kernels([(k, only.get(k.call_modules)) for k in low.kernels.values()], context)
        return ModelTiming(self._with_repeats(low, kernels, context), self.call_overhead(), context)

    def _with_repeats(self, low: Lowered, kernels: List[KernelTiming], context: str) -> List[KernelTiming]:
        """``kernels`` with the latency of their later calls: each kernel called more than once per
        inference, its deployed schedule timed in the repeat context (never above its first call:
        a repeat finds more in cache, so a slower one was a load burst)."""
        again = repeat_context(context)
        repeated = [k for k in kernels if k.calls > 1]
        if again is None or not repeated:
            return kernels
        measured = self.time_configs([(low.kernels[k.kernel], ScheduleConfig.from_key(k.schedule)) for k in repeated], again)
        out = []
        for k in kernels:
            m = measured.get((k.signature, k.schedule)) if k.calls > 1 else None
            out.append(dataclasses.replace(k, repeat_s=min(m.latency_s, k.latency_s)) if m is not None and m.ok else k)
        return out

    def lower(self, gm: fx.GraphModule, input_shape=None, bind_params: bool = False) -> Lowered:
        """``gm`` lowered as this profiler's target runs it (its channel block)."""
        return lower(gm, input_shape, bind_params, self.channel_block)

    def model(self, gm: fx.GraphModule, input_shape=None, context: Optional[str] = None, only=None) -> ModelTiming:
        """Predicted latency of a traced model, batch as in its example input."""
        return self.lowered(self.lower(gm, input_shape), context, only)


def _build_error(e: Exception) -> str:
    return str(e) if isinstance(e, ProfileError) and str(e).startswith("build failed") else \
        f"build failed: {type(e).__name__}: {str(e)[:300]}"
