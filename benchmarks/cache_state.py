"""What a kernel finds when a model calls it, and what that does to the cost model's prediction.

    .venv/bin/python benchmarks/cache_state.py [--models resnet20,resnet56,mobilenet_v2,densenet40] [--rounds 3]

hakd times a kernel's first call in an inference in the model's ``reuse-<N>MiB`` cache context
(hakd.cost.cache_context: N MiB of other data read before every call, the kernel's activation
inputs and output touched again). A kernel called again soon after (ResNet-56 calls each of its
two kernels per stage 8-9 times, alternating) finds more than its inputs warm: its own code (in
the instruction and micro-op caches, the branch predictors) and the vector units busy; hakd times
those later calls in the repeat context (``reuse-<N>MiB+repeat``). This script exports each model
with hakd, then times each deployed kernel in several states, interleaved with the whole model,
and sums them as a prediction does (plus the runtime's cost per call):

- ``table``: hakd's first-call context (LocalRunner, ``reuse-<N>MiB``);
- ``repeat``: hakd's repeat context (LocalRunner, ``reuse-<N>MiB+repeat``), at most ``table``;
- ``code_warm``: this script's own version of it (the kernel called once on other arguments after
  the eviction, before its hot arguments are touched);
- ``units_busy``: as ``table``, then ~30 us of dense matrix products in numpy: vector units busy,
  the kernel's code not warm.

Each row's sums are over the model's median latency in the same round: ``hakd_over_measured``
(first calls as ``table``, later ones as ``repeat``: the prediction as hakd makes it),
``table_over_measured`` (every call as ``table``: hakd's prediction before the repeat context),
``code_warm_over_measured`` (every call as ``code_warm``), ``first_table_rest_warm_over_measured``
and ``units_busy_over_measured``; ``export_prediction_over_measured`` is the prediction the export
itself made (timed before the rounds). Writes results/cache_state.csv (merged by model, cpu, isa
and round). One thread, batch 1, 3x32x32 input.
"""

import argparse
import platform
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch
import tvm

from hakd.cost.measure import build_kernel, repeat_context
from hakd.cost.profile import Profiler
from hakd.cost.schedules import ScheduleConfig
from hakd.cost.table import LatencyTable
from hakd.export import export, load
from hakd.passes.trace import trace
from common import calibrated, cpu, isa, merge_rows, write_csv  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

SHAPE = (1, 3, 32, 32)
REPEAT = 40  # timed calls per kernel and state, one call each
STATE = {"evict": np.zeros(0, np.float32), "hot": (), "call": None, "other": (), "square": np.ones((96, 96), np.float32)}


def _touch_hot(args):
    for i in STATE["hot"]:
        np.from_dlpack(args[i]).sum()


@tvm.register_global_func("bench.code_warm", override=True)
def _code_warm(*args):
    STATE["evict"].sum()
    STATE["call"](*STATE["other"])
    _touch_hot(args)


@tvm.register_global_func("bench.units_busy", override=True)
def _units_busy(*args):
    STATE["evict"].sum()
    for _ in range(3):
        STATE["square"] @ STATE["square"]
    _touch_hot(args)


def _arguments(kernel, seed):
    rng = np.random.default_rng(seed)
    dtypes = kernel.dtypes or ("float32",) * len(kernel.shapes)
    return [tvm.runtime.tensor(rng.standard_normal(s).astype(d) if "float" in d else np.zeros(s, d), tvm.cpu(0))
            for s, d in zip(kernel.shapes, dtypes)]


def _time_states(prof, kernel, lib, context):
    """Median microseconds of one call of ``lib`` in each state."""
    mod = lib.mod if hasattr(lib, "mod") else lib
    args, other = _arguments(kernel, 0), _arguments(kernel, 1)
    STATE.update(hot=kernel.hot_args, call=mod["main"], other=other)
    out = {state: prof.runner.time(lib, kernel.shapes, 0.0, "main", ctx, kernel.hot_args, kernel.dtypes).latency_s * 1e6
           for state, ctx in (("table", context), ("repeat", repeat_context(context)))}
    out["repeat"] = min(out["repeat"], out["table"])  # as hakd.cost.profile takes it
    for state in ("code_warm", "units_busy"):
        t = mod.time_evaluator("main", tvm.cpu(0), number=1, repeat=REPEAT, f_preproc=f"bench.{state}")(*args).results
        out[state] = float(np.median(t)) * 1e6
    return out


def run_model(name, rounds, folder):
    model = calibrated(name, SHAPE)
    gm = trace(model, torch.zeros(SHAPE))
    prof = Profiler("host", table=LatencyTable(Path(folder) / f"{name}.sqlite"))
    export(gm, Path(folder) / name, prof)
    deployed = load(Path(folder) / name)
    low = prof.lower(gm)
    timing = prof.lowered(low)
    context = timing.context
    STATE["evict"] = np.ones(int(context[len("reuse-"):-len("MiB")]) * 2**20 // 4, np.float32)
    kernels = {k.signature: k for k in low.kernels.values()}
    schedules = {kt.signature: kt.schedule for kt in timing.kernels}
    libs = {sig: build_kernel(prof.schedule(k.func, ScheduleConfig.from_key(schedules[sig])), prof.target)[0]
            for sig, k in kernels.items()}
    calls = sum(k.calls for k in kernels.values())
    overhead_us = timing.call_overhead_s * 1e6 * calls
    rows = []
    for r in range(rounds):
        before = np.median(deployed.time(number=20, repeat=15, min_repeat_ms=100)) * 1e6
        sums = dict(table=0.0, hakd=0.0, code_warm=0.0, units_busy=0.0, first_table_rest_warm=0.0)
        for sig, k in kernels.items():
            t = _time_states(prof, k, libs[sig], context)
            for state in ("table", "code_warm", "units_busy"):
                sums[state] += t[state] * k.calls
            sums["hakd"] += t["table"] + (k.calls - 1) * t["repeat"]
            sums["first_table_rest_warm"] += t["table"] + (k.calls - 1) * t["code_warm"]
        after = np.median(deployed.time(number=20, repeat=15, min_repeat_ms=100)) * 1e6
        measured = (before + after) / 2
        row = dict(model=name, cpu=cpu(), isa=isa(), round=str(r), context=context, kernels=len(kernels), kernel_calls=calls,
                   repeated_calls=calls - len(kernels), measured_us=f"{measured:.1f}",
                   measured_drift=f"{abs(after - before) / measured:.3f}",
                   export_prediction_over_measured=f"{timing.latency_s * 1e6 / measured:.3f}",
                   **{f"{s}_over_measured": f"{(v + overhead_us) / measured:.3f}" for s, v in sums.items()})
        print(row, flush=True)
        rows.append(row)
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", default="resnet20,resnet56,mobilenet_v2,densenet40")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    print(f"host {platform.machine()} {cpu()}, vector ISA {isa()}", flush=True)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for name in a.models.split(","):
            rows += run_model(name, a.rounds, folder)
    write_csv("cache_state.csv", merge_rows("cache_state.csv", rows, ("model", "cpu", "isa", "round")))
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        print(name, {k: statistics.median(float(r[k]) for r in mine) for k in mine[0] if k.endswith("_over_measured")})


if __name__ == "__main__":
    sys.exit(main())
