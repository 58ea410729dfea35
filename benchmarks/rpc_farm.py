"""Measurement throughput of a farm of boards: one RPC server against two under one tracker key.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/rpc_farm.py --rounds 5

Two loopback "boards" (TVM RPC servers, each pinned to its own core with taskset) register
with one tracker under the key ``two``; a third, on the first core, under ``one``. The kernels
of MobileNetV2 (28x28, every schedule candidate: what a cold profile times) are built once,
ahead, in a build pool; each round then times the same batch through ``one`` and through
``two`` (the order alternates), as hakd's profiler does (``RpcRunner.time_many``: one session per
kernel, as many at once as the key has boards). Writes results/rpc_farm.csv (columns:
benchmarks/README.md).
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # tests.cost.rpc_fixture: the loopback tracker
from hakd import models  # noqa: E402
from hakd.cost.measure import MeasureConfig, TimingJob  # noqa: E402
from hakd.cost.profile import Profiler  # noqa: E402
from hakd.cost.table import LatencyTable  # noqa: E402
from hakd.device import usable_cores  # noqa: E402
from hakd.passes.trace import trace  # noqa: E402
from common import isa, write_csv  # noqa: E402
from tests.cost.rpc_fixture import LocalRpc  # noqa: E402


def batch(prof: Profiler, limit: int):
    """TimingJobs for every candidate of MobileNetV2's kernels (the first ``limit``), built in the pool."""
    gm = trace(models.create("mobilenet_v2", in_channels=1).eval(), torch.zeros(1, 1, 28, 28))
    low = prof.lower(gm)
    pairs = [(k, cfg) for k in low.kernels.values() for cfg in prof.configs(k)][:limit]
    prof.prepare(pairs, "cold")
    jobs = []
    for k, cfg in pairs:
        lib, compile_s = prof._build(k, cfg)
        jobs.append(TimingJob(lib, k.shapes, compile_s, getattr(lib, "entry", "main"), "cold",
                              k.activation_args or (0,), k.dtypes))
    return jobs


def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--kernels", type=int, default=60, help="kernels timed per round and farm")
    args = parser.parse_args()
    cores = usable_cores()
    print(f"host vector ISA {isa()}, {cores} cores", flush=True)
    if cores < 2:
        sys.exit("two boards pinned to their own cores need two cores")
    farms = {"one": LocalRpc(key="one").start(cpu=0), "two": LocalRpc(key="two").start(cpu=0)}
    farms["two"].start_server("board2", cpu=1)
    try:
        profs = {name: Profiler("host", device=farm.device, table=LatencyTable(":memory:"), build_workers=2,
                                measure=MeasureConfig(threads=1)) for name, farm in farms.items()}
        jobs = batch(profs["one"], args.kernels)  # the same libraries for both farms
        print(f"{len(jobs)} kernels per round; boards: one {profs['one'].runner.boards()}, "
              f"two {profs['two'].runner.boards()}", flush=True)
        seconds = {name: [] for name in farms}
        for r in range(args.rounds):
            for name in (["one", "two"] if r % 2 == 0 else ["two", "one"]):
                results = {}
                t0 = time.perf_counter()
                profs[name].runner.time_many(jobs, results.__setitem__)
                seconds[name].append(time.perf_counter() - t0)
                failed = sum(not m.ok for m in results.values())
                print(f"round {r} {name}: {seconds[name][-1]:.1f} s, {failed} failed", flush=True)
        rows = []
        for name, boards in (("one", 1), ("two", 2)):
            s = statistics.median(seconds[name])
            rows.append(dict(isa=isa(), boards=boards, kernels=len(jobs), rounds=args.rounds, median_s=f"{s:.2f}",
                             kernels_per_s=f"{len(jobs) / s:.2f}",
                             throughput_vs_one=f"{statistics.median(a / b for a, b in zip(seconds['one'], seconds[name])):.2f}"))
        print(rows, flush=True)
        write_csv("rpc_farm.csv", rows)
    finally:
        for farm in farms.values():
            farm.stop_all()


if __name__ == "__main__":
    run()
