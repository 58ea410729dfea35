"""Is this host running at its usual speed? A reference kernel timed beside the kernels.

A machine shared with other processes (or a VM with other guests) runs 1.3-2x slower for
minutes at a time. A kernel timed then stays in the latency table too slow, and every width
chosen from it is wrong: a budget spent during a slow spell keeps time it does not need.

:class:`SteadyClock` times a small fixed kernel, a matrix-vector product over 2 MiB (vector
FMAs fed from L3, what other processes contend for), at most every ``every_s`` seconds of
timing. Its fastest time on this host (the *baseline*) is kept in the latency table. When the
reference takes more than ``1 + slack`` times the baseline, the clock sleeps until it is back
(the other work can finish), for at most ``PATIENCE_S`` per process; past that it times anyway,
counts the timings taken slow and warns once. The clock checks one thread: a spell on
another core only shows when it slows this one.

>>> clock = SteadyClock("host", LatencyTable(":memory:"), every_s=0)
>>> clock.check(); clock.checks, clock.slow_checks, clock.baseline_s > 0
(1, 0, True)
"""

from __future__ import annotations

import math
import socket
import time
import warnings
from typing import Callable, Dict, Optional

import numpy as np
import tvm
from tvm import s_tir, te

from hakd.cost.measure import Measurement, build_kernel
from hakd.cost.table import LatencyTable
from hakd.cost.target import parse_target

__all__ = ["SteadyClock", "SlowHostWarning", "PATIENCE_S", "REFERENCE", "reference_kernel"]

ROWS, COLUMNS = 512, 1024  # 2 MiB of matrix: past L2 on every host here, inside L3
REFERENCE = f"reference|{ROWS}x{COLUMNS}|"  # its table rows' signatures: this, then the host's name
PATIENCE_S = 120.0  # the longest this process waits for slow spells to end, over all its clocks
_waited = {"s": 0.0}  # seconds waited so far by this process
_built: Dict[str, tuple] = {}  # target key -> the compiled reference, its device and arguments
_fastest: Dict[tuple, float] = {}  # (target key, threads) -> the fastest reference this process timed


class SlowHostWarning(UserWarning):
    """Kernels were timed while this host ran slower than its best (another process on it)."""


def reference_kernel():
    """``y = x @ a`` for ``a`` of ROWS x COLUMNS: rows outer, the columns in vectors of 8 (any ISA
    vectorises it), so ``a`` streams once per call.

    >>> [p.name for p in reference_kernel().params]
    ['a', 'x', 'y']
    """
    a = te.placeholder((ROWS, COLUMNS), name="a")
    x = te.placeholder((ROWS,), name="x")
    i = te.reduce_axis((0, ROWS), name="i")
    y = te.compute((COLUMNS,), lambda j: te.sum(a[i, j] * x[i], axis=i), name="y")
    sch = s_tir.Schedule(te.create_prim_func([a, x, y]))
    block = sch.get_sblock("y")
    column, row = sch.get_loops(block)
    sch.reorder(row, column)
    sch.vectorize(sch.split(column, [None, 8])[1])
    sch.decompose_reduction(block, row)
    return sch.mod["main"]


class SteadyClock:
    """Checks, before a timing (:meth:`check`), that the host runs as fast as it can.

    ``target``: the target kernels are timed for (it runs here); the baseline is kept in
    ``table`` under ``target_key`` (default: the target's key) and ``threads``, one row per host."""

    def __init__(self, target, table: LatencyTable, target_key: Optional[str] = None, threads: int = 1,
                 slack: float = 0.2, every_s: float = 10.0, nap_s: float = 5.0, sleep: Callable[[float], None] = time.sleep):
        self.target = parse_target(target)
        self.table = table
        self.key = (target_key or self.target.key(), REFERENCE + socket.gethostname(), "steady", threads)
        self._process_key = (self.key[0], threads)
        self.slack, self.every_s, self.nap_s, self.sleep = slack, every_s, nap_s, sleep
        self.checks = self.slow_checks = 0
        self.worst_ratio = 1.0
        self._last: Optional[float] = None
        self._warned = False

    @property
    def baseline_s(self) -> Optional[float]:
        """The fastest reference timed on this host for this target and thread count (table or process)."""
        row = self.table.lookup(*self.key)
        known = [s for s in (row.latency_s if row is not None and row.ok else None, _fastest.get(self._process_key)) if s]
        return min(known) if known else None

    def reference_s(self) -> float:
        """One timing of the reference kernel, seconds: the median of 9 windows of 10 ms. Quiet, windows here
        are within 1.2x of each other (calls timed one by one, or a reference past L3, spread further); under
        load 70-80% of them take 1.4-3x, so the median says so; a new fastest becomes the baseline."""
        if self.key[0] not in _built:  # built and given its arguments once per process
            rng, dev = np.random.default_rng(0), tvm.cpu(0)
            _built[self.key[0]] = (build_kernel(reference_kernel(), self.target)[0], dev, [
                tvm.runtime.tensor(rng.standard_normal(s).astype("float32"), dev) for s in ((ROWS, COLUMNS), (ROWS,), (COLUMNS,))])
        lib, dev, args = _built[self.key[0]]
        seconds = float(np.median(lib.mod.time_evaluator("main", dev, number=5, repeat=9, min_repeat_ms=10)(*args).results))
        _fastest[self._process_key] = min(seconds, _fastest.get(self._process_key, seconds))
        row = self.table.lookup(*self.key)
        if row is None or not row.ok or seconds < row.latency_s:
            self.table.record(*self.key, Measurement(seconds, 0.0))
        return seconds

    def summary(self) -> dict:
        """What this clock saw, for a report: checks made, those that found the host slow after the
        wait, the slowest ratio to the baseline, and the seconds this process waited."""
        return {"checks": self.checks, "slow_checks": self.slow_checks, "worst_ratio": round(self.worst_ratio, 3),
                "waited_s": round(_waited["s"], 1), "baseline_s": self.baseline_s}

    def check(self) -> None:
        """Time the reference (when ``every_s`` has passed since the last check); while it is more than
        ``slack`` above the baseline, sleep ``nap_s`` and time it again, within the process's patience."""
        now = time.monotonic()
        if self._last is not None and now - self._last < self.every_s:
            return
        self.checks += 1
        baseline = self.baseline_s
        try:
            ratio = self.reference_s() / (baseline or math.inf)
            while ratio > 1 + self.slack and _waited["s"] < PATIENCE_S:
                nap = min(self.nap_s, PATIENCE_S - _waited["s"])
                self.sleep(nap)
                _waited["s"] += nap
                ratio = self.reference_s() / baseline
        except Exception as e:  # the clock is an aid: without it kernels are timed as before
            self.every_s, self._last = math.inf, time.monotonic()
            warnings.warn(SlowHostWarning(f"the reference kernel could not be timed ({type(e).__name__}: {str(e)[:200]}): "
                                          "kernels are timed without checking that this host runs at its usual speed"))
            return
        if ratio > 1 + self.slack:
            self.slow_checks += 1
            self.worst_ratio = max(self.worst_ratio, ratio)
            if not self._warned:
                self._warned = True
                warnings.warn(SlowHostWarning(
                    f"this host runs {ratio:.2f}x slower than its best (a reference kernel: {baseline * ratio * 1e6:.0f} us "
                    f"against {baseline * 1e6:.0f} us): another process is using it, and hakd has waited {_waited['s']:.0f} s "
                    "for it to end; kernels timed now go into the latency table too slow. Time on a quiet machine, or "
                    "rerun with a new table (--table) when it is quiet"), stacklevel=2)
        self._last = time.monotonic()
