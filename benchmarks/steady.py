"""A slow spell on a shared host, with and without hakd's steady clock (hakd/cost/steady.py).

    .venv/bin/python benchmarks/steady.py [--model resnet20] [--rounds 2] [--spell 40] [--load stream]

The model's deployed kernels are found once (every candidate timed). Then each round predicts the
model three times, each on a new latency table (every kernel timed afresh, the deployed schedules
only, built before the timing starts):

- ``quiet``: nothing else running (before it, the reference kernel alone, ``REFERENCES`` times: the
  clock's own noise on a quiet host, against its 1.2x threshold);
- ``spell, clock off``: a load started on every core (one numpy process per core for ``--spell`` seconds,
  ``--load``: copying 64 MiB arrays, or multiplying matrices) just before the timings, the steady clock
  taken away;
- ``spell, clock on``: the same load, the profiler as hakd runs it: the clock finds the host slow
  and waits (within its patience, reset per phase: each phase stands for a run of its own).

The two spell phases swap places every other round. Writes results/steady.csv (merged by model, cpu, isa,
load, round and phase); the columns are explained in benchmarks/README.md. One thread, batch 1.
"""

import argparse
import os
import subprocess
import sys
import time

import numpy as np
import torch

from hakd.cost import steady
from hakd.cost.profile import Profiler
from hakd.cost.schedules import ScheduleConfig
from hakd.cost.table import LatencyTable
from hakd.passes.trace import trace
from common import calibrated, code_version, cpu, host, isa, merge_rows, write_csv  # noqa: E402

SETTLE_S = 2.0  # seconds from starting a spell's processes to the first timing (they start and fill their arrays)
REFERENCES = 30  # reference timings per round, quiet, for the clock's own noise
LOADS = {  # one process per core; "stream" copies 64 MiB arrays (L3 evicted, memory bandwidth taken), what other
    # tenants of a VM host do to it; "compute" multiplies 768x768 matrices (a core's time shared, caches mostly kept)
    "stream": "a = np.ones(2**24, dtype=np.float32); b = np.empty_like(a)\nwhile time.time() < end:\n    np.copyto(b, a)\n",
    "compute": "a = np.ones((768, 768), dtype=np.float32)\nwhile time.time() < end:\n    b = a @ a\n",
}


def start_spell(seconds: float, load: str) -> list:
    """One single-threaded ``load`` loop (LOADS) per core, for ``seconds``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    code = f"import numpy as np, time\nend = time.time() + {seconds}\n" + LOADS[load]
    return [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(os.cpu_count() or 1)]


def phase(name: str, low, winners: dict, spell_s: float, load: str, clock: bool, build_workers: int) -> dict:
    """One prediction on a new table, the deployed schedules built first; ``spell_s`` > 0: under load."""
    prof = Profiler(host(), table=LatencyTable(":memory:"), build_workers=build_workers)
    prof.prepare([(low.kernels[k], ScheduleConfig.from_key(s)) for k, s in winners.items()], prof.context(low))
    if not clock:
        prof.runner.steady = None
    steady._waited["s"] = 0.0  # each phase stands for a run of its own
    loads = start_spell(spell_s, load) if spell_s else []
    time.sleep(SETTLE_S if loads else 0)  # the load running before the first timing (and the clock's first check)
    t0 = time.time()
    try:
        timing = prof.lowered(low, only={k.call_modules: {winners[k.name]} for k in low.kernels.values()})
        elapsed = time.time() - t0
    finally:
        for p in loads:
            p.wait()
    seen = prof.runner.steady.summary() if prof.runner.steady is not None else {}
    return {"phase": name, "predicted_us": round(timing.latency_s * 1e6, 1), "timing_s": round(elapsed, 1),
            "timed_within_spell": bool(spell_s) and SETTLE_S + elapsed < spell_s, "waited_s": seen.get("waited_s", ""),
            "checks": seen.get("checks", ""), "slow_checks": seen.get("slow_checks", ""),
            "worst_ratio": seen.get("worst_ratio", "")}


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--spell", type=float, default=40.0, help="seconds of load on every core in a spell phase")
    ap.add_argument("--load", default="stream", choices=sorted(LOADS), help="what the spell's processes do")
    ap.add_argument("--build-workers", type=int, default=2)
    args = ap.parse_args(argv)
    print(f"host: {cpu()} ({isa()}), {os.cpu_count()} cores; model {args.model}; spells of {args.spell:.0f} s", flush=True)
    shape = (1, 3, 32, 32)
    gm = trace(calibrated(args.model, shape), torch.zeros(shape))
    first = Profiler(host(), table=LatencyTable(":memory:"), build_workers=args.build_workers)
    low = first.lower(gm)
    winners = {k.kernel: k.schedule for k in first.lowered(low).kernels}  # every candidate, once, on the quiet host
    rows = []
    for r in range(args.rounds):
        spells = [("spell, clock off", False), ("spell, clock on", True)][::1 if r % 2 == 0 else -1]
        refs = np.sort([first.runner.steady.reference_s() for _ in range(REFERENCES)])  # the clock's own noise, quiet
        print(f"round {r} reference alone, quiet: {refs[0] * 1e6:.1f} us, median / lowest {refs[len(refs) // 2] / refs[0]:.3f}, "
              f"highest / lowest {refs[-1] / refs[0]:.3f}", flush=True)
        quiet = phase("quiet", low, winners, 0, args.load, True, args.build_workers)
        quiet.update(reference_us=round(refs[0] * 1e6, 1), reference_median_over_lowest=round(refs[len(refs) // 2] / refs[0], 3),
                     reference_highest_over_lowest=round(refs[-1] / refs[0], 3))
        results = [quiet] + [phase(name, low, winners, args.spell, args.load, clock, args.build_workers) for name, clock in spells]
        for row in results:
            row.update(model=args.model, round=r, over_quiet=round(row["predicted_us"] / quiet["predicted_us"], 3),
                       spell_s=args.spell if row["phase"] != "quiet" else 0, load=args.load, cpu=cpu(), isa=isa(), code=code_version())
            print(f"round {r} {row['phase']:17s} {row['predicted_us']:9.1f} us  x{row['over_quiet']:.3f}  "
                  f"timed in {row['timing_s']:.0f} s, waited {row['waited_s']} s, slow checks {row['slow_checks']}", flush=True)
        rows += results
    write_csv("steady.csv", merge_rows("steady.csv", rows, key=("model", "cpu", "isa", "load", "round", "phase")))


if __name__ == "__main__":
    main()
