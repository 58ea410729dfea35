"""Compile scheduled kernels in worker processes, while timing stays alone on the device.

A :class:`BuildPool` of ``workers`` processes (started on first use; each imports TVM once)
takes a batch of (kernel, schedule) jobs, splits it into chunks, and in each worker schedules
and compiles a chunk as one module (one entry per kernel) and links it into one shared library
for the target: one linker call per chunk, not per kernel. The caller then times the kernels
one at a time (:meth:`hakd.cost.measure.LocalRunner.time_many`), with no build running.

A failure is a value: a kernel whose template does not fit or that fails to compile comes back
as an error string, as :meth:`hakd.cost.profile.Profiler.time_config` records it; a kernel whose
worker died comes back as None (the caller builds it). Nothing is written to the latency table
here; a worker killed mid-chunk loses that chunk only::

    pool = BuildPool(parse_target("host"), workers=2)
    built = pool.build([(kernel.func, ScheduleConfig("conv2d", oc_tile=8, vector=8))])
    built[0].entry  # 'k0': the entry of that kernel in its chunk's library
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import queue
import shutil
import struct
import subprocess
import sys
import tempfile
import time
import weakref
from concurrent.futures import ThreadPoolExecutor
from typing import List, Optional, Sequence, Tuple, Union

import tvm

from hakd.cost.measure import export_kernel
from hakd.cost.target import TargetSpec, host_arch

__all__ = ["BuildPool", "Built", "chunks", "build_workers", "MIN_BATCH"]

CHUNK = 8  # kernels per library: one link (~0.09 s here) shared by up to 8 compiles (~0.06 s each)
MIN_BATCH = 4  # fewer kernels build as fast in the caller: a chunk's link costs more than the compiles it spreads


def build_workers(requested: Optional[int] = None, log=print) -> int:
    """Build workers to use: ``requested`` (None: this host's cores), capped at the cores with a word.

    >>> build_workers(1)
    1
    >>> build_workers(0)
    Traceback (most recent call last):
    ...
    hakd.errors.ConfigError: --build-workers: a whole number of at least 1, got 0
    """
    from hakd.device import usable_cores
    from hakd.errors import ConfigError

    cores = usable_cores()
    if requested is None:
        return cores
    if isinstance(requested, bool) or not isinstance(requested, int) or requested < 1:
        raise ConfigError(f"--build-workers: a whole number of at least 1, got {requested!r}")
    if requested > cores:
        log(f"{requested} build workers asked for, but this process may run on {cores} core(s): building with {cores}")
        return cores
    return requested


@dataclasses.dataclass
class Built:
    """One kernel compiled by a worker: entry ``entry`` of the shared library at ``path``.

    Quacks as a TVM executable where hakd uses one: ``mod`` for timing here, ``export_library``
    for a board (the library is copied: it is already built for the target)."""

    path: str
    entry: str
    compile_s: float
    _module: Optional[object] = None

    @property
    def mod(self):
        if self._module is None:
            self._module = tvm.runtime.load_module(self.path)
        return self._module

    def export_library(self, path: str, fcompile=None) -> None:
        shutil.copyfile(self.path, path)


def chunks(n: int, workers: int, size: int = CHUNK) -> List[range]:
    """Indices 0..n-1 in chunks of at most ``size``, at least one per worker when there are enough.

    >>> [list(c) for c in chunks(5, 2)]
    [[0, 1, 2], [3, 4]]
    >>> [len(c) for c in chunks(20, 2)]
    [7, 7, 6]
    """
    count = max(min(n, workers), -(-n // size))
    step, extra = divmod(n, count) if count else (0, 0)
    out, start = [], 0
    for i in range(count):
        end = start + step + (1 if i < extra else 0)
        out.append(range(start, end))
        start = end
    return out


def _compile_chunk(target: TargetSpec, items: Sequence[Tuple[str, str]], path: str):
    """In a worker: schedule and compile every (PrimFunc JSON, schedule key) as entry ``k<i>``,
    link them into one library at ``path``. Returns, per item, (entry, seconds) or an error string."""
    from hakd.cost.schedules import ScheduleConfig, apply_schedule

    funcs, results = {}, []
    for i, (func_json, key) in enumerate(items):
        t0 = time.perf_counter()
        try:
            func = apply_schedule(tvm.ir.load_json(func_json), ScheduleConfig.from_key(key))
            funcs[f"k{i}"] = func.with_attr("global_symbol", f"k{i}")
            results.append((f"k{i}", time.perf_counter() - t0))
        except Exception as e:  # a template that does not fit
            results.append(f"build failed: {type(e).__name__}: {str(e)[:300]}")
    if not funcs:
        return results
    t0 = time.perf_counter()
    try:
        lib = tvm.compile(tvm.IRModule(funcs), target=target.tvm_target())
        export_kernel(lib, path, target)
    except Exception as e:  # one kernel that does not compile fails the chunk: compile them one by one
        if len(funcs) > 1:
            return _one_by_one(target, items, path)
        return [r if isinstance(r, str) else f"build failed: {type(e).__name__}: {str(e)[:300]}" for r in results]
    share = (time.perf_counter() - t0) / len(funcs)  # the chunk's compile and link, shared out
    return [r if isinstance(r, str) else (r[0], r[1] + share) for r in results]


def _one_by_one(target: TargetSpec, items, path: str):
    """Each item in a library of its own (after their chunk failed to compile): (path, entry, seconds) or an error."""
    out, stem = [], os.path.splitext(path)[0]
    for i, item in enumerate(items):
        [r] = _compile_chunk(target, [item], f"{stem}-{i}.so")
        out.append(r if isinstance(r, str) else (f"{stem}-{i}.so", r[0], r[1]))
    return out


class WorkerDied(RuntimeError):
    """A build worker ended (killed, out of memory) before answering."""


def _send(fd: int, obj) -> None:
    data = pickle.dumps(obj)
    with os.fdopen(os.dup(fd), "wb") as f:
        f.write(struct.pack("<Q", len(data)) + data)


def _receive(fd: int):
    with os.fdopen(os.dup(fd), "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise WorkerDied("the build worker ended")
        (size,) = struct.unpack("<Q", head)
        data = f.read(size)
    if len(data) < size:
        raise WorkerDied("the build worker ended mid-answer")
    return pickle.loads(data)


class _Worker:
    """One build process (``python -m hakd.cost.build_pool IN OUT``), talking over two pipes of its
    own: its stdout and stderr, where TVM and the linker may print, go nowhere. Run as a module,
    not by multiprocessing: a user's script without a ``__main__`` guard is not imported again."""

    def __init__(self):
        to_worker, self._in = os.pipe()
        self._out, from_worker = os.pipe()
        self.proc = subprocess.Popen([sys.executable, "-m", "hakd.cost.build_pool", str(to_worker), str(from_worker)],
                                     pass_fds=(to_worker, from_worker), stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     env={**os.environ, "TVM_NUM_THREADS": "1"})
        os.close(to_worker)
        os.close(from_worker)

    def call(self, *args):
        try:
            _send(self._in, args)
        except OSError as e:  # a broken pipe: it is gone
            raise WorkerDied(f"the build worker ended ({e})") from e
        return _receive(self._out)

    def close(self) -> None:
        for fd in (self._in, self._out):
            try:
                os.close(fd)
            except OSError:
                pass
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def _serve(to_worker: int, from_worker: int) -> None:
    """A build worker's loop: (target, items, path) in, :func:`_compile_chunk`'s answer out, until EOF."""
    while True:
        try:
            args = _receive(to_worker)
        except WorkerDied:
            return
        try:
            answer = _compile_chunk(*args)
        except Exception as e:  # never leave the caller waiting
            answer = [f"build failed: {type(e).__name__}: {str(e)[:300]}"] * len(args[1])
        _send(from_worker, answer)


class BuildPool:
    """``workers`` processes that compile kernels for ``target`` (see the module's docstring)."""

    def __init__(self, target: TargetSpec, workers: int):
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            from hakd.errors import ConfigError

            raise ConfigError(f"--build-workers: a whole number of at least 1, got {workers!r}")
        self.target, self.workers = target, workers
        self.folder = tempfile.mkdtemp(prefix="hakd-build-")
        self._idle: "queue.SimpleQueue[_Worker]" = queue.SimpleQueue()
        self._all: List[_Worker] = []
        self._chunk = 0
        self._finalizer = weakref.finalize(self, BuildPool._shutdown, self._all, self.folder)

    @staticmethod
    def _shutdown(workers, folder) -> None:
        for w in workers:
            w.close()
        shutil.rmtree(folder, ignore_errors=True)

    def _run(self, items, path):
        """One chunk on an idle worker (started when none is idle: at most ``workers`` run)."""
        try:
            worker = self._idle.get_nowait()
        except queue.Empty:
            worker = _Worker()
            self._all.append(worker)
        try:
            answer = worker.call(self.target, items, path)
        except WorkerDied:  # not the kernels' fault: they are left to the caller to build
            worker.close()
            self._all.remove(worker)
            return [None] * len(items)
        self._idle.put(worker)
        return answer

    def build(self, jobs: Sequence[Tuple[object, str]]) -> List[Union[Built, str, None]]:
        """Per (PrimFunc, schedule key) of ``jobs``: a :class:`Built` kernel, an error string (the
        schedule does not fit, the kernel does not compile), or None when its worker died (killed,
        out of memory: a new one starts with the next batch)."""
        items = [(tvm.ir.save_json(func), key) for func, key in jobs]
        parts = chunks(len(items), self.workers)
        paths = []
        for _ in parts:
            self._chunk += 1
            paths.append(os.path.join(self.folder, f"chunk{self._chunk}.so"))
        with ThreadPoolExecutor(self.workers, thread_name_prefix="hakd-build") as threads:  # each waits on its worker
            answers = list(threads.map(lambda a: self._run([items[i] for i in a[0]], a[1]), zip(parts, paths)))
        out: List[Union[Built, str, None]] = [None] * len(items)
        here = self.target.arch == host_arch()  # loaded once per library; a board's libraries are only copied
        for part, path, results in zip(parts, paths, answers):
            module = tvm.runtime.load_module(path) if here and os.path.isfile(path) else None
            for i, r in zip(part, results):
                if r is None or isinstance(r, str):
                    out[i] = r
                elif len(r) == 3:  # compiled alone, after its chunk failed
                    out[i] = Built(r[0], r[1], r[2])
                else:
                    out[i] = Built(path, r[0], r[1], module)
        return out

    def close(self) -> None:
        self._finalizer()


if __name__ == "__main__":
    _serve(int(sys.argv[1]), int(sys.argv[2]))
