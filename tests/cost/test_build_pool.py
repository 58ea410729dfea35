"""Kernels compiled in build workers: the same kernels, failures as values, dead workers replaced."""

import os
import signal

import numpy as np
import pytest
import tvm

from hakd.cost.build_pool import BuildPool, build_workers
from hakd.cost.lower import lower
from hakd.cost.measure import build_kernel
from hakd.cost.profile import Profiler
from hakd.cost.schedules import ScheduleConfig, apply_schedule, candidates
from hakd.cost.table import LatencyTable
from hakd.errors import ConfigError
from hakd.sweep import group_staircase
from tests.cost.conftest import QUICK

pytestmark = pytest.mark.slow


def _outputs(mod, entry, kernel):
    rng = np.random.default_rng(1)
    args = [tvm.runtime.tensor(rng.standard_normal(s).astype("float32")) for s in kernel.shapes]
    mod[entry](*args)
    return args[-1].numpy()


def test_a_pool_builds_the_kernels_built_here_and_says_which_failed(tiny):
    gm, _ = tiny
    prof = Profiler("host", table=LatencyTable(":memory:"), measure=QUICK)
    kernels = [k for k in lower(gm, block=prof.channel_block).kernels.values()]
    jobs = [(k, cfg) for k in kernels for cfg in candidates(k.func)]
    misfit = next(k for k in kernels if k.kind == "generic")  # a conv template on an elementwise kernel
    pool = BuildPool(prof.target, 2)
    try:
        built = pool.build([(k.func, cfg.key()) for k, cfg in jobs] + [(misfit.func, "conv2d/oc8/v8")])
    finally:
        pool.close()
    assert isinstance(built[-1], str) and built[-1].startswith("build failed") and "does not fit" in built[-1]
    assert len({b.path for b in built[:-1]}) >= 2  # one library per chunk, one chunk per worker at least
    for (k, cfg), b in zip(jobs, built):
        here, _ = build_kernel(apply_schedule(k.func, cfg), prof.target)
        np.testing.assert_allclose(_outputs(b.mod, b.entry, k), _outputs(here.mod, "main", k), rtol=1e-5, atol=1e-5)
        assert b.compile_s > 0
    assert not os.path.exists(pool.folder)  # closed: its libraries are gone


def test_a_killed_build_worker_leaves_its_chunk_to_the_caller_and_is_replaced(tiny):
    gm, _ = tiny
    prof = Profiler("host", table=LatencyTable(":memory:"), measure=QUICK)
    k = next(k for k in lower(gm, block=prof.channel_block).kernels.values() if k.kind == "conv2d")
    jobs = [(k.func, cfg.key()) for cfg in candidates(k.func)] * 2
    pool = BuildPool(prof.target, 2)
    try:
        assert all(not isinstance(b, str) for b in pool.build(jobs))
        for worker in list(pool._all):
            os.kill(worker.proc.pid, signal.SIGKILL)
            worker.proc.wait()
        assert pool.build(jobs) == [None] * len(jobs)  # not the kernels' fault: left to the caller, nothing recorded
        assert all(not isinstance(b, str) for b in pool.build(jobs))  # new workers
    finally:
        pool.close()


def test_a_sweep_with_build_workers_measures_the_kernels_a_serial_sweep_measures(tiny):
    gm, groups = tiny
    serial = Profiler("host", table=LatencyTable(":memory:"), measure=QUICK)
    pooled = Profiler("host", table=LatencyTable(":memory:"), measure=QUICK, build_workers=2)
    a = group_staircase(serial, gm, groups, "conv1.0", adaptive=False)
    b = group_staircase(pooled, gm, groups, "conv1.0", adaptive=False)
    assert set(a.latency) == set(b.latency) == set(range(1, groups["conv1.0"].width + 1))
    keys = lambda prof: {(r["signature"], r["schedule"]) for r in prof.table.rows()}  # noqa: E731
    assert keys(serial) == keys(pooled) and serial.compiles == pooled.compiles
    assert pooled.pool._all, "nothing was built in the pool"


def test_build_workers_are_capped_at_the_cores_with_a_word():
    said = []
    assert build_workers(10_000, said.append) == len(os.sched_getaffinity(0))
    assert "10000 build workers asked for" in said[0]
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ConfigError, match="--build-workers"):
            build_workers(bad)


def test_a_chunk_that_does_not_compile_is_compiled_kernel_by_kernel(tiny, tmp_path, monkeypatch):
    from hakd.cost import build_pool

    gm, _ = tiny
    prof = Profiler("host", table=LatencyTable(":memory:"), measure=QUICK)
    k = next(k for k in lower(gm, block=prof.channel_block).kernels.values() if k.kind == "conv2d")
    items = [(tvm.ir.save_json(k.func), cfg.key()) for cfg in candidates(k.func)]
    compile_ = tvm.compile

    def fails_together(mod, target):  # as if one kernel broke the chunk's module
        if len(mod.functions) > 1:
            raise RuntimeError("codegen failed")
        return compile_(mod, target=target)

    monkeypatch.setattr(build_pool.tvm, "compile", fails_together)
    results = build_pool._compile_chunk(prof.target, items, str(tmp_path / "chunk.so"))
    assert len(results) == len(items) >= 2
    for (path, entry, seconds), (_, key) in zip(results, items):
        assert os.path.isfile(path) and seconds > 0
        here, _ = build_kernel(apply_schedule(k.func, ScheduleConfig.from_key(key)), prof.target)
        np.testing.assert_allclose(_outputs(tvm.runtime.load_module(path), entry, k), _outputs(here.mod, "main", k),
                                   rtol=1e-5, atol=1e-5)
