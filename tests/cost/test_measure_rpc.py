import time

import pytest

from hakd.cost.lower import lower
from hakd.cost.measure import DeviceError, LocalRunner, build_kernel
from hakd.cost.profile import Profiler
from hakd.cost.schedules import candidates
from hakd.cost.table import LatencyTable
from tests.cost.conftest import QUICK
from tests.cost.rpc_fixture import LocalRpc

pytestmark = pytest.mark.slow


@pytest.fixture
def rpc_pair():
    pair = LocalRpc().start()
    yield pair
    pair.stop_all()


def test_a_failed_run_is_a_value_not_an_exception(tiny):
    gm, _ = tiny
    k = next(k for k in lower(gm).kernels.values() if k.kind == "conv2d")
    lib, _ = build_kernel(k.func, Profiler("host", table=LatencyTable(":memory:"), measure=QUICK).target)
    m = LocalRunner(QUICK).time(lib, [(1, 2, 3)] * len(k.shapes))  # wrong argument shapes
    assert not m.ok and m.error and m.latency_s is None
    good = LocalRunner(QUICK).time(lib, k.shapes)
    assert good.ok and good.latency_s > 0 and good.noise >= 0


def test_measuring_through_a_real_rpc_tracker_and_server(tiny, rpc_pair, tmp_path):
    gm, _ = tiny
    remote = Profiler("host", device=rpc_pair.device, table=LatencyTable(tmp_path / "r.sqlite"), measure=QUICK)
    local = Profiler("host", table=LatencyTable(tmp_path / "l.sqlite"), measure=QUICK)
    low = lower(gm)
    conv = max((k for k in low.kernels.values() if k.kind == "conv2d"), key=lambda k: k.shapes[1][0] * k.shapes[1][1])
    r, l = remote.kernel(conv), local.kernel(conv)
    assert r.latency_s > 0 and remote.compiles == len(candidates(conv.func))
    assert 0.2 < r.latency_s / l.latency_s < 5  # same machine, loopback: the same order of magnitude
    whole = remote.model(gm)  # a board times kernels cold, and the runtime call cost through the VM
    assert whole.context == "cold" and 0 < whole.call_overhead_s < 1e-4
    rows = list(remote.table.rows())
    assert {row["device"] for row in rows} == {rpc_pair.device}


def test_server_stopped_mid_sweep_gives_a_clear_error_and_keeps_finished_rows(tiny, rpc_pair, tmp_path):
    gm, _ = tiny
    table = LatencyTable(tmp_path / "r.sqlite")
    prof = Profiler("host", device=rpc_pair.device, table=table, measure=QUICK)
    kernels = [k for k in lower(gm).kernels.values() if k.kind != "generic"]
    prof.kernel(kernels[0])
    finished = len(table)
    assert finished > 0
    rpc_pair.stop("server")
    t0 = time.time()
    with pytest.raises(DeviceError, match=f"device {rpc_pair.device} did not answer.*rerun to continue"):
        for k in kernels[1:]:
            prof.kernel(k)
    assert time.time() - t0 < 60  # retried, then gave up: no hang
    again = LatencyTable(tmp_path / "r.sqlite")
    assert len(again) >= finished
    # a rerun with the server back reuses every finished measurement
    rpc_pair.start_server()
    prof2 = Profiler("host", device=rpc_pair.device, table=again, measure=QUICK)
    prof2.kernel(kernels[0])
    assert prof2.compiles == 0 and prof2.table_hits == len(candidates(kernels[0].func))


def test_no_tracker_is_a_clear_error_within_15_seconds(tmp_path):
    import subprocess
    import sys
    import time

    from tests.conftest import REPO

    t0 = time.time()
    run = subprocess.run([sys.executable, "-m", "hakd", "profile", "resnet20", "--target", "host", "--device",
                          "rpc://127.0.0.1:9/none", "--table", str(tmp_path / "t.sqlite")],
                         cwd=REPO, capture_output=True, text=True, timeout=120)
    assert run.returncode == 2 and time.time() - t0 < 15
    assert "no RPC tracker answers at 127.0.0.1:9" in run.stderr and "Traceback" not in run.stderr
    assert run.stderr.count("\n") == 1  # one line: no warnings while it waits


@pytest.fixture
def two_boards():
    farm = LocalRpc(key="hakd-farm").start()
    farm.start_server("board2")
    yield farm
    farm.stop_all()


def _jobs(prof, kernels, context="cold"):
    from hakd.cost.measure import TimingJob

    jobs = []
    for k in kernels:
        for cfg in prof.configs(k):
            lib, compile_s = prof._build(k, cfg)
            jobs.append(TimingJob(lib, k.shapes, compile_s, getattr(lib, "entry", "main"), context, dtypes=k.dtypes))
    return jobs


def test_a_farm_of_two_boards_times_a_batch_on_both_and_survives_one_dying(tiny, two_boards, tmp_path):
    gm, _ = tiny
    prof = Profiler("host", device=two_boards.device, table=LatencyTable(tmp_path / "r.sqlite"), measure=QUICK,
                    build_workers=2)
    assert prof.runner.boards() == 2
    kernels = [k for k in lower(gm).kernels.values() if k.kind != "generic"]
    timings = prof.kernels([(k, None) for k in kernels], "cold")  # built in the pool, timed on both boards
    assert all(t.latency_s > 0 for t in timings)
    assert len(prof.table) >= sum(len(prof.configs(k)) for k in kernels)
    jobs = _jobs(prof, kernels) * 3
    seen = {}

    def done(i, m):  # the second board is killed as soon as the first kernel is back: the others finish on the first
        seen[i] = m
        if len(seen) == 1:
            two_boards.stop("board2")

    prof.runner.time_many(jobs, done)
    assert sorted(seen) == list(range(len(jobs))) and all(m.ok for m in seen.values())
