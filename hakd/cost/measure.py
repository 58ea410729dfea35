"""Build one scheduled kernel and time it, here or on a board through TVM's RPC tracker.

Timing follows TVM's ``time_evaluator``: one warm-up call (discarded), then
``repeat`` measurements, each the mean of ``number`` calls (raised until a
measurement lasts ``min_repeat_ms``). The latency is the median over repeats and the
noise is (max - min) / median. A failure is a value: ``Measurement(error=...)``.

Every timing is taken in a *cache context* (:mod:`hakd.cost.cache_context`): warm, cold,
or the state a kernel finds inside a model (its first call, or a later one).

>>> m = Measurement(latency_s=1e-4, noise=0.02)
>>> m.ok, round(m.latency_us)
(True, 100)
"""

from __future__ import annotations

import dataclasses
import os
import socket
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, as_completed
from typing import Callable, List, Optional, Sequence

import numpy as np
import tvm

from hakd.cost import cache_context as contexts
from hakd.cost.cache_context import CACHE_MODES, cache_context, repeat_context
from hakd.cost.target import DeviceSpec, TargetSpec, host_arch
from hakd.errors import HakdError

__all__ = ["MeasureConfig", "Measurement", "LocalRunner", "RpcRunner", "DeviceError", "build_kernel", "export_kernel",
           "TimingJob", "make_runner", "time_vm_main",
           "pin_threads", "cache_context", "repeat_context", "CACHE_MODES"]


class DeviceError(HakdError):
    """The device that times kernels cannot be reached (after retries)."""


@dataclasses.dataclass(frozen=True)
class MeasureConfig:
    """How kernels are timed. ``threads`` is pinned for every timing (TVM's thread pool).

    ``cache``: ``"model"`` (default) times each kernel in the cache state it meets inside
    the model being profiled; ``"warm"`` and ``"cold"`` force one state. Outside the warm
    state every call is timed alone, ``cold_repeat`` times."""

    number: int = 10
    repeat: int = 5
    min_repeat_ms: int = 20
    cache: str = "model"
    cold_repeat: int = 30
    threads: int = 1
    retries: int = 2
    retry_wait_s: float = 1.0
    session_timeout_s: int = 120
    connect_timeout_s: float = 10.0

    def __post_init__(self):
        from hakd.config import _at_least, _one_of, _threads

        for name, low in (("number", 1), ("repeat", 1), ("min_repeat_ms", 0), ("retries", 0),
                          ("session_timeout_s", 1), ("cold_repeat", 1)):
            _at_least(self, name, low)
        _threads(self)
        _one_of(self, "cache", CACHE_MODES)


@dataclasses.dataclass(frozen=True)
class Measurement:
    latency_s: Optional[float] = None
    noise: Optional[float] = None
    error: Optional[str] = None
    compile_s: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and self.latency_s is not None

    @property
    def latency_us(self) -> float:
        return self.latency_s * 1e6


def pin_threads(threads: int) -> None:
    """Fix TVM's CPU thread pool size for this process (read when the pool first starts)."""
    current = os.environ.get("TVM_NUM_THREADS")
    os.environ["TVM_NUM_THREADS"] = str(threads)
    if current is not None and current != str(threads):  # the pool may already run at another size
        tvm.get_global_func("runtime.config_threadpool")(-3, threads)


def build_kernel(func, target: TargetSpec):
    """Compile one PrimFunc as a standalone module with entry ``main``; returns (executable, seconds)."""
    t0 = time.perf_counter()
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=target.tvm_target())
    return lib, time.perf_counter() - t0


def export_kernel(lib, path: str, target: TargetSpec) -> str:
    """Write ``lib`` as a shared library for ``target`` (cross-compiled for another architecture)."""
    from tvm.support import cc

    foreign = target.arch != host_arch()
    lib.export_library(path, fcompile=cc.cross_compiler(f"{target.mtriple}-g++") if foreign else None)
    return path


@dataclasses.dataclass
class TimingJob:
    """One kernel to time: its library (entry ``entry``), argument shapes and dtypes, cache context
    and hot arguments (:meth:`LocalRunner.time`)."""

    lib: object
    shapes: Sequence[Sequence[int]]
    compile_s: float = 0.0
    entry: str = "main"
    context: str = "warm"
    hot: Sequence[int] = (0,)
    dtypes: Sequence[str] = ()

    def run(self, runner) -> "Measurement":
        return runner.time(self.lib, self.shapes, self.compile_s, self.entry, self.context, self.hot, self.dtypes)


def _summarise(results: Sequence[float], compile_s: float) -> Measurement:
    r = np.asarray(results, dtype=float)
    median = float(np.median(r))
    return Measurement(median, float((r.max() - r.min()) / median) if median > 0 else 0.0, None, compile_s)


def _random_args(shapes, dev, dtypes=(), seed: int = 0):
    """Random float arguments; integer ones (a gather's indices) are zeros: always in bounds."""
    rng = np.random.default_rng(seed)
    dtypes = dtypes or ("float32",) * len(shapes)
    return [tvm.runtime.tensor(rng.standard_normal(s).astype(d) if "float" in d else np.zeros(s, dtype=d), dev)
            for s, d in zip(shapes, dtypes)]


class LocalRunner:
    """Times kernels on this host. ``steady``: a :class:`hakd.cost.steady.SteadyClock` checked
    before each timing (the profiler sets it), or None."""

    def __init__(self, config: MeasureConfig = MeasureConfig()):
        self.config = config
        self.device = DeviceSpec()
        self.steady = None
        pin_threads(config.threads)

    def context(self, footprint_bytes: int) -> str:
        return cache_context(self.config.cache, footprint_bytes)

    def time(self, lib, shapes, compile_s: float = 0.0, entry: str = "main", context: str = "warm",
             hot: Sequence[int] = (0,), dtypes: Sequence[str] = ()) -> Measurement:
        """Time ``lib[entry]`` on random arguments of ``shapes`` (and ``dtypes``, default float32)
        in cache ``context``; ``hot``: the positions of the arguments a model run keeps in cache
        (:attr:`hakd.cost.lower.Kernel.hot_args`: the inputs earlier kernels just wrote, the output)."""
        if self.steady is not None:
            self.steady.check()
        try:
            dev = tvm.cpu(0)
            mod = lib.mod if hasattr(lib, "mod") else lib
            args = _random_args(shapes, dev, dtypes)
            other = _random_args(shapes, dev, dtypes, seed=1) if context.endswith(contexts.REPEAT) else ()
            mod[entry](*args)  # warm-up, discarded
            return _summarise(contexts.timer(mod, entry, dev, self.config, context, hot, other)(*args).results, compile_s)
        except Exception as e:  # a kernel that crashes or fails to run is a failed measurement
            if contexts.release():  # not the kernel: Ctrl-C during the eviction between calls
                raise KeyboardInterrupt from e
            return Measurement(error=f"{type(e).__name__}: {str(e)[:300]}", compile_s=compile_s)
        finally:
            contexts.release()

    def check(self) -> None:
        """This host is always there."""

    def time_many(self, jobs: Sequence[TimingJob], done: Callable[[int, Measurement], None]) -> None:
        """Time ``jobs`` one after the other (nothing else runs on the host meanwhile); ``done(i, m)``
        as each finishes."""
        for i, job in enumerate(jobs):
            done(i, job.run(self))

    def time_vm(self, executable, input_shape) -> Measurement:
        """One call of a compiled model's ``main`` here (Relax VM, warm)."""
        if self.steady is not None:
            self.steady.check()
        try:
            return _summarise(_time_vm(executable, tvm.cpu(0), input_shape, self.config), 0.0)
        except Exception as e:
            return Measurement(error=f"{type(e).__name__}: {str(e)[:300]}")


class RpcRunner:
    """Times kernels on a board registered with a TVM RPC tracker under ``device.key``.

    The kernel is exported as a shared library (cross-compiled for the target's
    triple), uploaded, loaded and timed remotely. Connection failures are retried
    ``retries`` times; after that :class:`DeviceError` names the device.
    """

    def __init__(self, device: DeviceSpec, target: TargetSpec, config: MeasureConfig = MeasureConfig()):
        self.device, self.target, self.config = device, target, config

    def _connect(self):
        """A new session (one per measurement: a dropped session cannot poison the next one).

        A request for a key no server offers would wait forever in the tracker's queue, so
        wait for a registered server for at most ``connect_timeout_s`` first (registered: a
        board that has just ended a session is back among the free ones a moment later, and
        the tracker hands it out then)."""
        from tvm import rpc

        self.check()
        tracker = rpc.connect_tracker(self.device.host, self.device.port)
        deadline = time.time() + self.config.connect_timeout_s
        while _registered(tracker.summary(), self.device.key) == 0:
            if time.time() > deadline:
                raise ConnectionError(f"no RPC server with key {self.device.key!r} at the tracker "
                                      f"after {self.config.connect_timeout_s} s")
            time.sleep(0.2)
        session = tracker.request(self.device.key, priority=0, session_timeout=self.config.session_timeout_s, max_retry=1)
        session.get_function("runtime.config_threadpool")(-3, self.config.threads)
        return session

    def check(self) -> None:
        """Raise DeviceError now, with the fix, when no tracker answers at the device's address
        (before anything is compiled for it)."""
        try:  # TVM's own connect retries a refused port for 60 s, warning every 5 s: ask once, with our timeout
            socket.create_connection((self.device.host, self.device.port), timeout=self.config.connect_timeout_s).close()
        except OSError as e:
            raise DeviceError(
                f"no RPC tracker answers at {self.device.host}:{self.device.port} ({e.strerror or e}) within "
                f"{self.config.connect_timeout_s} s: start one with `python -m tvm.exec.rpc_tracker --host 0.0.0.0 "
                f"--port {self.device.port}` and register the board with `python -m tvm.exec.rpc_server --tracker "
                f"{self.device.host}:{self.device.port} --key {self.device.key}`, or check the address") from e

    def export(self, lib, folder: str) -> str:
        """Write the kernel as a shared library for the board (cross-compiled for another architecture)."""
        return export_kernel(lib, os.path.join(folder, "kernel.so"), self.target)

    def boards(self) -> int:
        """How many boards the tracker has under the key (registered; at least 1)."""
        from tvm import rpc

        try:
            self.check()
            summary = rpc.connect_tracker(self.device.host, self.device.port).summary()
        except Exception:  # no tracker: the first timing says so, with the fix
            return 1
        return max(1, _registered(summary, self.device.key))

    def time_many(self, jobs: Sequence[TimingJob], done: Callable[[int, Measurement], None]) -> None:
        """Time ``jobs`` on every board under the key at once, one session per board and job
        (:meth:`_remote`): a board that dies loses the job it had, which is retried on another.
        ``done(i, m)`` is called here, in this thread, as each finishes."""
        boards = min(self.boards(), len(jobs))
        if boards <= 1:
            for i, job in enumerate(jobs):
                done(i, job.run(self))
            return
        with ThreadPoolExecutor(boards, thread_name_prefix="hakd-board") as pool:
            futures = {pool.submit(job.run, self): i for i, job in enumerate(jobs)}
            try:
                for future in as_completed(futures):
                    done(futures[future], future.result())
            except BaseException:  # DeviceError, Ctrl-C: the jobs not started are not started
                for future in futures:
                    future.cancel()
                raise

    def context(self, footprint_bytes: int) -> str:
        return cache_context(self.config.cache, footprint_bytes, evict_here=False)

    def time(self, lib, shapes, compile_s: float = 0.0, entry: str = "main", context: str = "warm",
             hot: Sequence[int] = (0,), dtypes: Sequence[str] = ()) -> Measurement:
        """As :meth:`LocalRunner.time`; on a board only the first argument stays hot when cold."""
        if context.startswith("reuse-"):
            raise ValueError(f"context {context!r} needs hakd beside the kernel; an RPC board times 'warm' or 'cold'")

        def run(mod, dev):
            args = _random_args(shapes, dev, dtypes)
            mod[entry](*args)  # warm-up, discarded
            return contexts.timer(mod, entry, dev, self.config, context)(*args).results

        return self._remote(lib, run, compile_s)

    def time_vm(self, executable, input_shape) -> Measurement:
        """One call of a compiled model's ``main`` on the board (Relax VM, warm)."""
        return self._remote(executable, lambda mod, dev: _time_vm(mod, dev, input_shape, self.config))

    def _remote(self, lib, run, compile_s: float = 0.0) -> Measurement:
        """Export ``lib``, then ``run(remote_module, remote_device) -> seconds per repeat`` in a
        new session, retried on connection failures."""
        c = self.config
        with tempfile.TemporaryDirectory() as folder:
            try:
                path = self.export(lib, folder)
            except Exception as e:
                return Measurement(error=f"export failed: {type(e).__name__}: {str(e)[:300]}", compile_s=compile_s)
            last: Optional[Exception] = None
            errors: List[str] = []
            for attempt in range(c.retries + 1):
                remote = None
                try:
                    remote = self._connect()
                    remote.upload(path)
                    return _summarise(run(remote.load_module(os.path.basename(path)), remote.cpu(0)), compile_s)
                except DeviceError:  # no tracker at all: retrying would only make the user wait
                    raise
                except Exception as e:  # connection lost, server gone, session timed out
                    last = e
                    errors.append(f"{type(e).__name__}: {str(e)[:150]}")
                    if attempt < c.retries:
                        time.sleep(c.retry_wait_s)
                finally:
                    del remote  # closes the session, so the server is free for the next one
            raise DeviceError(
                f"device {self.device} did not answer after {c.retries + 1} attempts ({'; '.join(errors)}); check that its RPC server is running and registered with the tracker "
                f"(python -m tvm.exec.query_rpc_tracker --host {self.device.host} --port {self.device.port}). "
                "Finished measurements are kept in the latency table: rerun to continue"
            ) from last


def _registered(summary: dict, key: str) -> int:
    """Boards a tracker's summary holds under ``key``: registered servers, or free ones."""
    servers = sum(1 for s in summary.get("server_info", []) if s.get("key") == f"server:{key}")
    return max(servers, int(summary.get("queue_info", {}).get(key, {}).get("free", 0)))


def _time_vm(mod, dev, input_shape, config: MeasureConfig):
    """Seconds per call of ``main`` of a Relax executable (``mod``), one value per repeat."""
    from tvm import relax

    return time_vm_main(relax.VirtualMachine(mod, dev), dev, input_shape, config.number, config.repeat, config.min_repeat_ms)


def time_vm_main(vm, dev, input_shape, number: int, repeat: int, min_repeat_ms: int):
    """Seconds per call of a loaded Relax VM's ``main`` on a fixed random input, one value per
    repeat, after one discarded warm-up call (TVM's time_evaluator on ``invoke_stateful``)."""
    x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(input_shape).astype("float32"), dev)
    vm.set_input("main", x)
    vm.invoke_stateful("main")
    timer = vm.time_evaluator("invoke_stateful", dev, number=number, repeat=repeat, min_repeat_ms=min_repeat_ms)
    return timer("main").results


def make_runner(target: TargetSpec, device: DeviceSpec, config: MeasureConfig = MeasureConfig()):
    from hakd.cost.target import check_runnable

    check_runnable(target, device)
    return LocalRunner(config) if device.kind == "local" else RpcRunner(device, target, config)
