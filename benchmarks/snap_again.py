"""Is snap up at a fixed point? Snap the Fisher plan up, re-sweep every staircase around the
snapped plan (its neighbours at their new widths), snap up again, until no group moves.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/snap_again.py --models resnet20 resnet56 \
        --table runs/bench/resnet20-snap-20261130-072019.sqlite runs/bench/resnet56-snap-20261130-081748.sqlite

Reads the teacher's Fisher folder that snap.py made (runs/bench/<model>-fisher/), times kernels
into a copy of each --table (the original is left as it was; without --table, an empty table:
a cold sweep) and writes results/snap_again.csv (columns: benchmarks/README.md). Latencies are
the cost model's predictions of the whole rebuilt student, as ratios to the Fisher student's.
"""

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

from hakd.cost.profile import Profiler
from hakd.cost.table import LatencyTable
from hakd.passes.counts import count
from hakd.passes.rebuild import rebuild
from hakd.passes.snap import snap
from hakd.prune_folder import load_prune_folder
from hakd.sweep import load_or_measure, predict
from common import Bench, merge_rows, progress, write_csv  # noqa: E402  (benchmarks/ is on sys.path as a script)


def rounds(name, bench, table: Path, max_rounds: int) -> list:
    """One row per round of snapping up: groups moved, parameters and predicted latency."""
    folder = bench.runs / f"{name}-fisher"
    if not (folder / "plan.json").is_file():
        sys.exit(f"{folder}: no Fisher plan; run benchmarks/snap.py --models {name} first")
    gm, groups, fisher, importance = load_prune_folder(folder)
    prof = Profiler("host", table=LatencyTable(table))
    params0, latency0 = count(rebuild(gm, groups, fisher), bench.shape)[0], predict(prof, gm, groups, fisher)
    plan, rows, scratch = fisher, [], Path(tempfile.mkdtemp(prefix="snap-again-"))
    for r in range(1, max_rounds + 1):
        t = time.time()
        around = folder / "staircases.json" if plan is fisher else scratch / f"staircases-{r}.json"
        stairs = load_or_measure(around, prof, gm, groups, plan, log=progress(f"{name} round {r}"))
        snapped = snap(plan, stairs, importance, "up")
        moved = sum(snapped.width(g) != plan.width(g) for g in groups.widths())
        rows.append(dict(model=name, round=r, groups_moved=moved,
                         params_vs_fisher=round(count(rebuild(gm, groups, snapped), bench.shape)[0] / params0, 4),
                         predicted_latency_vs_fisher=round(predict(prof, gm, groups, snapped) / latency0, 4),
                         seconds=round(time.time() - t, 1)))
        print(rows[-1], flush=True)
        if moved == 0:
            break
        plan = snapped
    shutil.rmtree(scratch)
    return rows


def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56"])
    parser.add_argument("--table", nargs="*", type=Path, default=[],
                        help="per model, in order: a latency table of an earlier snap.py run (copied, not changed)")
    parser.add_argument("--rounds", type=int, default=4, help="at most this many rounds of snapping up")
    args = parser.parse_args()
    if args.table and len(args.table) != len(args.models):
        parser.error(f"--table: {len(args.table)} tables for {len(args.models)} models (one each, or none)")
    missing = [t for t in args.table if not t.is_file()]
    if missing:
        parser.error(f"--table {missing[0]}: no such latency table")
    torch.set_num_threads(1)
    bench, rows = Bench(), []
    with tempfile.TemporaryDirectory() as tmp:
        for i, name in enumerate(args.models):
            table = Path(tmp) / f"{name}.sqlite"
            if args.table:
                shutil.copy(args.table[i], table)
            rows += rounds(name, bench, table, args.rounds)
    write_csv("snap_again.csv", merge_rows("snap_again.csv", rows))


if __name__ == "__main__":
    run()
