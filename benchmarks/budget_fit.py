"""How much of a latency budget the allocator spends on the real model, and in how many rounds.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/budget_fit.py [--models resnet20] \
        [--fractions 0.6,0.7,0.8,0.9,1.0,1.1,1.2] [--value importance] [--table T.sqlite]

The teacher and its Fisher plan at --keep of the parameters come from benchmarks/snap.py's
`prepare` (runs/bench/, trained and pruned through the CLI when missing); the staircases around
the Fisher plan are the ones saved beside it (measured when missing). For each budget (a fraction
of the Fisher student's predicted latency) `hakd.budget.fit_budget` chooses a student: the row
holds its predicted latency against the budget, the rounds it took, and what it kept. Every
prediction reads the latency table, so a second run on the same table gives the same numbers
(kernels that no run timed yet are timed when first seen). Writes results/budget_fit.csv; columns:
benchmarks/README.md.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hakd.budget import fit_budget
from hakd.cost.profile import Profiler
from hakd.cost.table import LatencyTable
from hakd.errors import BudgetError
from hakd.passes.allocate import importance_kept
from hakd.passes.counts import count
from hakd.passes.rebuild import rebuild
from hakd.prune_folder import load_prune_folder
from hakd.sweep import load_or_measure, predict
from common import Bench, add_data_args, merge_rows, progress, write_csv  # noqa: E402
from snap import add_prepare_args, prepare  # noqa: E402


def fractions(text):
    values = [float(v) for v in text.split(",")]
    if not values or any(not v > 0 for v in values):
        raise argparse.ArgumentTypeError(f"fractions of the Fisher student's latency, > 0, comma-separated: {text!r}")
    return values


def rows_of(name, args, prof):
    """One row per budget fraction for model ``name``."""
    _, folder = prepare(name, args)
    gm, groups, fisher, importance = load_prune_folder(folder)
    log = progress(name)
    stairs = load_or_measure(folder / "staircases.json", prof, gm, groups, fisher, log=log)
    shape = args.bench.shape
    fisher_s = predict(prof, gm, groups, fisher)
    fisher_params = count(rebuild(gm, groups, fisher), shape)[0]
    total = sum(float(np.sum(v)) for v in importance.values())
    rows = []
    for fraction in args.fractions:
        budget_s = fraction * fisher_s
        t = time.time()
        try:
            result = fit_budget(prof, gm, groups, fisher, stairs, importance, budget_s, value=args.value, log=log)
        except BudgetError as e:
            log(f"budget {fraction:g}: {e}")
            continue
        seconds = time.time() - t
        plan = result.plan
        params = count(rebuild(gm, groups, plan), shape)[0]
        kept = importance_kept(plan, importance) / total
        rows.append({"series": f"{name},{args.value}", "model": name, "value": args.value, "budget_over_fisher": f"{fraction:.3f}",
                     "budget_us": f"{budget_s * 1e6:.1f}", "predicted_us": f"{result.predicted_s * 1e6:.1f}",
                     "used": f"{result.predicted_s / budget_s:.4f}", "rounds": len(result.rounds),
                     "rounds_predicted_us": " ".join(f"{r['predicted_s'] * 1e6:.1f}" for r in result.rounds),
                     "fell_back": int(all(r["predicted_s"] > budget_s for r in result.rounds)),  # no round fitted
                     "params": params, "params_over_fisher": f"{params / fisher_params:.3f}",
                     "importance_kept": f"{kept:.4f}", "seconds": f"{seconds:.1f}"})
    return rows


def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20"])
    parser.add_argument("--fractions", type=fractions, default=fractions("0.6,0.7,0.8,0.9,1.0,1.1,1.2"),
                        help="budgets, as fractions of the Fisher student's predicted latency")
    parser.add_argument("--value", default="importance", choices=["importance", "params"],
                        help="what the allocator keeps")
    add_prepare_args(parser)
    parser.add_argument("--table", type=Path, help="latency table (default: runs/bench/<model>-budget-fit.sqlite)")
    add_data_args(parser)
    args = parser.parse_args()
    args.bench = bench = Bench(args.data, args.data_root)
    bench.runs.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    out = bench.results("budget_fit.csv")
    for name in args.models:
        prof = Profiler("host", table=LatencyTable(args.table or bench.runs / f"{name}-budget-fit.sqlite"))
        write_csv(out, merge_rows(out, rows_of(name, args, prof), key="series"))


if __name__ == "__main__":
    sys.exit(run())
