"""Do two cold sweeps of the same staircases agree? Optimal points and snap decisions, run against run.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/staircase_stability.py [--models resnet20] [--runs 2]

The teacher and its Fisher plan come from benchmarks/snap.py's `prepare` (runs/bench/). Every group's
staircase around the Fisher plan is swept --runs times, each from a new empty latency table (so every
kernel is compiled and timed anew), one after the other on this host. Per group, the row holds each
run's optimal points and what snapping the Fisher width up and down chooses on them; a last row per
model (group "all") holds the snapped students' parameters. Writes results/staircase_stability.csv;
columns: benchmarks/README.md.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from hakd.cost.profile import Profiler
from hakd.cost.table import LatencyTable
from hakd.passes.counts import count
from hakd.passes.rebuild import rebuild
from hakd.passes.snap import snap, snap_width
from hakd.prune_folder import load_prune_folder
from hakd.sweep import model_staircases
from common import Bench, add_data_args, merge_rows, write_csv  # noqa: E402
from snap import add_prepare_args, prepare  # noqa: E402


def sweeps(name, args):
    """The Fisher plan's folder contents and ``args.runs`` Staircases, each from an empty table."""
    _, folder = prepare(name, args)
    gm, groups, fisher, importance = load_prune_folder(folder)
    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            t = time.time()
            prof = Profiler("host", table=LatencyTable(Path(tmp) / f"run{i}.sqlite"))
            runs.append(model_staircases(prof, gm, groups, fisher, log=lambda s: None, progress=False))
            print(f"{name}: sweep {i + 1} of {args.runs}: {time.time() - t:.0f} s", file=sys.stderr, flush=True)
    return gm, groups, fisher, importance, runs


def rows_of(name, args):
    gm, groups, fisher, importance, runs = sweeps(name, args)
    rows = []
    for g in runs[0].groups:
        width = fisher.width(g)
        points = [set(r[g].optimal) for r in runs]
        row = {"model": name, "group": g, "fisher_width": width,
               "optimal_points": " | ".join(" ".join(map(str, sorted(p))) for p in points),
               "in_one_run_only": " ".join(map(str, sorted(set.union(*points) - set.intersection(*points)))),
               "snap_up": " | ".join(str(snap_width(r[g], width, "up")) for r in runs),
               "snap_down": " | ".join(str(snap_width(r[g], width, "down")) for r in runs)}
        rows.append(row)
    shape = args.bench.shape
    params = {mode: [count(rebuild(gm, groups, snap(fisher, r, importance, mode)), shape)[0] for r in runs]
              for mode in ("up", "down")}
    fisher_params = count(rebuild(gm, groups, fisher), shape)[0]
    rows.append({"model": name, "group": "all", "fisher_width": fisher_params, "optimal_points": "",
                 "in_one_run_only": "",
                 "snap_up": " | ".join(f"{p / fisher_params:.3f}" for p in params["up"]),
                 "snap_down": " | ".join(f"{p / fisher_params:.3f}" for p in params["down"])})
    return rows


def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20"])
    parser.add_argument("--runs", type=int, default=2, help="cold sweeps per model (>= 2)")
    add_prepare_args(parser)
    add_data_args(parser)
    args = parser.parse_args()
    if args.runs < 2:
        parser.error("--runs: at least 2 sweeps to compare")
    args.bench = bench = Bench(args.data, args.data_root)
    bench.runs.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    out = bench.results("staircase_stability.csv")
    for name in args.models:
        write_csv(out, merge_rows(out, rows_of(name, args)))


if __name__ == "__main__":
    sys.exit(run())
