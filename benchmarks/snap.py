"""Snapping and the latency budget against Fisher and Torch-Pruning, measured side by side.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/snap.py --models resnet20 resnet56 mobilenet_v2 \
        --epochs 2 --prune-every 10 --rounds 7

Per model: a teacher trained on the real Fashion-MNIST (`hakd train`, resumed when its folder
exists), Fisher-pruned to --keep of its parameters (`hakd prune`); every group's staircase
around the Fisher plan on this host (cold, from an empty table, then warm); the students
below; each exported with its measured schedules and timed in interleaved rounds.
Writes results/snap.csv and results/snap_staircases.csv (columns: benchmarks/README.md); with
`--data cifar10 --data-root FOLDER`, CIFAR-10 from the user's folder, in runs/bench/cifar10/ and
results/snap_cifar10.csv.
Needs the bench extra (`pip install -e .[bench]`: torch-pruning).
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from hakd.budget import fit_budget
from hakd.errors import BudgetError
from hakd.cli import main as hakd
from hakd.prune_folder import load_prune_folder
from hakd.cost.profile import Profiler
from hakd.cost.table import LatencyTable
from hakd.export import export, load
from hakd.passes.allocate import importance_kept
from hakd.passes.counts import count
from hakd.passes.rebuild import rebuild
from hakd.passes.snap import snap
from hakd.sweep import load_or_measure, model_staircases, predict
from hakd.train import load_trained
from common import Bench, add_data_args, code_version, isa, merge_rows, progress, write_csv  # noqa: E402  (benchmarks/ is on sys.path as a script)
from peers import at_params, plan_from_pruned  # noqa: E402


def prepare(name, args):
    """(teacher module, Fisher prune folder), trained and pruned through the CLI if missing
    (``args``: epochs, keep, prune_every and bench, the data set; ``threads``, if it has them,
    torch's threads for both, else 1; ``fisher_batch``, if it has one, Fisher's images per step, else 128)."""
    teacher_dir, fisher_dir = args.bench.runs / f"{name}-teacher", args.bench.runs / f"{name}-fisher"
    threads = str(getattr(args, "threads", 1))
    train_teacher(name, args.bench, teacher_dir, args.epochs, "--threads", threads)
    if not (fisher_dir / "base.pt").is_file():
        assert hakd(["prune", "--run", str(teacher_dir), "--amount", str(args.keep), "--prune-every", str(args.prune_every),
                     "--batch-size", str(getattr(args, "fisher_batch", 128)), "--threads", threads, "--out",
                     str(fisher_dir), "--resume"]) == 0
    return load_trained(teacher_dir), fisher_dir


def train_teacher(name, bench, folder, epochs, *options):
    """Train (or resume) the zoo model ``name`` through `hakd train` into ``folder`` unless its
    metrics already hold ``epochs`` epochs; ``options``: more `hakd train` options."""
    metrics = folder / "metrics.csv"
    if not metrics.is_file() or len(metrics.read_text().splitlines()) <= epochs:  # a header, then one line per epoch
        assert hakd(["train", name, *bench.cli(), "--epochs", str(epochs), *options, "--out", str(folder), "--resume"]) == 0


def quick_fisher(name, bench, keep):
    """(graph, groups, plan): a Fisher plan at ``keep`` of the parameters, made quickly to time
    staircases around (the time depends on the widths, not on how well the model learnt): a
    teacher of one epoch over 2,000 images (`hakd train`), then Fisher pruning with one channel
    removed every step of 8 images (``PruneConfig(prune_every=1, batch_size=8)``), in
    runs/bench/NAME-quick-teacher/ and NAME-quick-fisher/ (both resumed, then reused)."""
    from hakd import data as datasets
    from hakd.config import DataConfig, PruneConfig
    from hakd.device import usable_cores
    from hakd.passes.fisher import fisher_prune
    from hakd.passes.groups import find_groups
    from hakd.passes.trace import trace
    from hakd.prune_folder import write_prune_folder

    teacher_dir, folder = bench.runs / f"{name}-quick-teacher", bench.runs / f"{name}-quick-fisher"
    if not (folder / "plan.json").is_file():
        train_teacher(name, bench, teacher_dir, 1, "--limit-train", "2000", "--threads", "1")
        gm = trace(load_trained(teacher_dir).eval(), torch.zeros(bench.shape))
        groups = find_groups(gm)
        train, _ = datasets.load(DataConfig(bench.data, root=bench.root))
        config = PruneConfig(amount=keep, prune_every=1, batch_size=8, threads=usable_cores())
        result = fisher_prune(gm, groups, train, config, folder / "run", resume=True)
        write_prune_folder(folder, result.model, groups, result.plan, result.importance)
    gm, groups, plan, _ = load_prune_folder(folder)
    return gm, groups, plan


def add_prepare_args(parser) -> None:
    """The options ``prepare`` reads: the same defaults in every script, so that they find the same runs."""
    parser.add_argument("--epochs", type=int, default=2, help="teacher epochs")
    parser.add_argument("--keep", type=float, default=0.5, help="Fisher: fraction of the parameters kept")
    parser.add_argument("--prune-every", type=int, default=10, help="Fisher: a channel every this many steps")


def equal_params_budget(prof, gm, groups, plan, stairs, importance, params, low_s, high_s, shape, steps=6,
                        value="importance", min_keep=0.0, log=lambda s: None):
    """The budget student whose parameters come nearest ``params`` (bisection on the budget
    between ``low_s`` and ``high_s``); ``value="params"``: the allocator keeps parameters, so
    this is the fastest student it finds at that parameter count (``min_keep``: no group below
    that fraction of its width); ``log``: each budget round, and each bisection step."""
    best = None
    for _ in range(steps):
        mid = (low_s + high_s) / 2
        try:
            result = fit_budget(prof, gm, groups, plan, stairs, importance, mid, value=value, min_keep=min_keep,
                                log=log)
        except BudgetError:  # below the fastest student the floor allows
            low_s = mid
            continue
        n, _ = count(rebuild(gm, groups, result.plan), shape)
        log(f"bisection at {mid * 1e6:.1f} us: {n} parameters (aiming at {params})")
        if best is None or abs(n - params) < abs(best[1] - params):
            best = (result, n)
        low_s, high_s = (low_s, mid) if n > params else (mid, high_s)
    if best is None:
        raise BudgetError(f"no budget in {low_s * 1e6:.1f}..{high_s * 1e6:.1f} us can be met")
    return best[0]


def timed_staircases(name, prof, gm, groups, plan, table_rows, around, save_to=None):
    """Every group's staircase around ``plan`` from an empty table (cold), then again (warm), with
    the profiler's build workers."""
    t0, c0 = time.time(), prof.compiles
    stairs = model_staircases(prof, gm, groups, plan, save_to=save_to)
    cold_s, cold_compiles = time.time() - t0, prof.compiles - c0
    t0 = time.time()  # a rerun, as hakd does it: the saved staircases, fresh for the plan, are not swept again
    model_staircases(prof, gm, groups, plan, previous=stairs, log=lambda s: None)
    warm_s = time.time() - t0
    t0 = time.time()  # every group swept again from the table (nothing compiled or timed; every width lowered)
    model_staircases(Profiler("host", table=prof.table), gm, groups, plan, log=lambda s: None)
    resweep_s = time.time() - t0
    workers = prof.pool.workers if prof.pool is not None else 1
    table_rows.append(dict(run=f"{name} {code_version()} w{workers}", model=name, code=code_version(), build_workers=workers,
                           isa=isa(), around=around, groups=len(stairs.groups), cold_s=f"{cold_s:.1f}",
                           cold_compiles=cold_compiles, warm_s=f"{warm_s:.1f}", table_resweep_s=f"{resweep_s:.1f}",
                           widths_measured=sum(len(st.latency) for st in stairs.groups.values()),
                           widths_full_sweep=sum(st.full_width for st in stairs.groups.values()),
                           threads=prof.measure.threads, context=stairs.context))
    print(table_rows[-1], flush=True)
    return stairs


def students(name, args, prof, table_rows):
    teacher, folder = prepare(name, args)
    gm, groups, fisher, importance = load_prune_folder(folder)
    if args.table:  # kernels measured by an earlier run: its staircases brought up to date, no cold/warm row
        stairs = load_or_measure(folder / "staircases.json", prof, gm, groups, fisher, log=progress(name))
    else:
        stairs = timed_staircases(name, prof, gm, groups, fisher, table_rows, "fisher", folder / "staircases.json")
    fisher_s = predict(prof, gm, groups, fisher)
    plans = {"fisher": fisher}
    for mode in ("up", "down", "nearest"):
        plans[f"snap_{mode}"] = snap(fisher, stairs, importance, mode)
    plans["budget=fisher"] = fit_budget(prof, gm, groups, fisher, stairs, importance, fisher_s).plan
    plans["budget=fisher,params"] = fit_budget(prof, gm, groups, fisher, stairs, importance, fisher_s, value="params").plan
    shape = args.bench.shape
    fisher_params, _ = count(rebuild(gm, groups, fisher), shape)
    teacher_s = predict(prof, gm, groups, groups.plan())
    for round_to in (None, 8):
        tag = f"torch_pruning{'_r8' if round_to else ''}"
        tp_student, ratio = at_params(teacher, shape, fisher_params, round_to)
        tp = plan_from_pruned(teacher, tp_student, groups)
        plans[tag] = tp
        tp_s = predict(prof, gm, groups, tp)
        plans[f"budget={tag}"] = fit_budget(prof, gm, groups, fisher, stairs, importance, tp_s).plan
        if args.equal_params:  # a bisection of fit_budget calls: slow on a loaded machine
            tp_params, _ = count(rebuild(gm, groups, tp), shape)
            bisect = (prof, gm, groups, fisher, stairs, importance, tp_params, 0.2 * teacher_s, teacher_s, shape)
            log = progress(f"{name} {tag}")
            plans[f"budget@params={tag}"] = equal_params_budget(*bisect, log=log).plan
            plans[f"budget@params={tag},params"] = equal_params_budget(*bisect, value="params", log=log).plan
            plans[f"budget@params={tag},params,min_keep={args.min_keep:g}"] = equal_params_budget(
                *bisect, value="params", min_keep=args.min_keep, log=log).plan
    return gm, groups, importance, plans


def export_folder(bench, name, method):
    return bench.runs / "exports" / name / method.replace("=", "-").replace(",", "-")


def time_rounds(models, rounds):
    """Each model's ``vm`` timed once per round, every model in every round: ``times`` per model."""
    for _ in range(rounds):
        for m in models.values():
            m["times"].append(float(np.median(m["vm"].time(number=20, repeat=5, min_repeat_ms=50))))


def retime(bench, name, rounds):
    """The rows of results/snap.csv for ``name`` with their measured columns timed again from
    the exports (for a run whose timing shared the machine with other jobs)."""
    import csv

    from common import RESULTS

    with open(RESULTS / bench.results("snap.csv"), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["model"] == name]
    models = {r["method"]: dict(vm=load(export_folder(bench, name, r["method"])), times=[]) for r in rows}
    time_rounds(models, rounds)
    base = models["fisher"]["times"]
    for r in rows:
        ratios = [t / f for t, f in zip(models[r["method"]]["times"], base)]
        r.update(measured_us=f"{np.median(models[r['method']]['times']) * 1e6:.1f}",
                 measured_over_fisher=f"{np.median(ratios):.3f}", ratio_per_round=" ".join(f"{x:.3f}" for x in ratios))
        print(r["method"], r["measured_us"], r["measured_over_fisher"], flush=True)
    return rows


def measure(bench, name, gm, groups, importance, plans, prof, rounds):
    """Export every student, then time them in interleaved rounds; ratios to Fisher per round."""
    total = sum(float(np.sum(v)) for v in importance.values())
    models = {}
    for method, plan in plans.items():
        student = rebuild(gm, groups, plan)
        result = export(student, export_folder(bench, name, method), prof)
        params, macs = count(student, bench.shape)
        kept = importance_kept(plan, importance)
        models[method] = dict(vm=load(result.folder), predicted=result.predicted_latency_s, params=params, macs=macs,
                              importance=kept / total, error=result.max_abs_error, times=[])
    time_rounds(models, rounds)
    base = models["fisher"]
    rows = []
    for method, m in models.items():
        ratios = [t / f for t, f in zip(m["times"], base["times"])]
        rows.append(dict(model=name, method=method, params=m["params"], params_over_fisher=f"{m['params'] / base['params']:.3f}",
                         macs=m["macs"], importance_kept=f"{m['importance']:.4f}",
                         predicted_us=f"{m['predicted'] * 1e6:.1f}",
                         predicted_over_fisher=f"{m['predicted'] / base['predicted']:.3f}",
                         measured_us=f"{np.median(m['times']) * 1e6:.1f}", measured_over_fisher=f"{np.median(ratios):.3f}",
                         ratio_per_round=" ".join(f"{r:.3f}" for r in ratios), max_abs_error=f"{m['error']:.1e}",
                         widths=" ".join(str(plans[method].width(g)) for g in importance)))
        print(rows[-1], flush=True)
    return rows


def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["resnet20", "resnet56", "mobilenet_v2"])
    add_prepare_args(parser)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--equal-params", action="store_true",
                        help="also the budget student at Torch-Pruning's parameter count (bisection on the budget)")
    parser.add_argument("--min-keep", type=float, default=0.25,
                        help="with --equal-params: also the parameter-keeping student with no group below this "
                             "fraction of its width")
    add_data_args(parser)
    parser.add_argument("--staircases-only", action="store_true",
                        help="only time whole-model staircases, around a plan at --keep of the parameters (--around)")
    parser.add_argument("--around", choices=("uniform", "fisher"), default="uniform",
                        help="with --staircases-only: a uniform plan of the untrained zoo model, or a quick Fisher "
                             "plan (one-epoch teacher on 2,000 images; a channel every 8 images)")
    parser.add_argument("--build-workers", type=int, nargs="+", default=[1],
                        help="with --staircases-only: each model swept cold once per count of build workers, "
                             "alternating (e.g. 1 2)")
    parser.add_argument("--table", type=Path,
                        help="time kernels into this latency table (e.g. a methods.py run's) instead of a new empty "
                             "one: the staircases saved beside the Fisher plan are reused, no row of "
                             "snap_staircases.csv is written")
    parser.add_argument("--retime", action="store_true",
                        help="only time the students of --models again from their exports (measured columns of snap.csv)")
    args = parser.parse_args()
    if args.table and not args.table.is_file():
        parser.error(f"--table {args.table}: no such latency table (leave --table out to start from an empty one)")
    args.bench = bench = Bench(args.data, args.data_root)
    bench.runs.mkdir(parents=True, exist_ok=True)
    out, stairs_out = bench.results("snap.csv"), bench.results("snap_staircases.csv")
    torch.set_num_threads(1)
    rows, table_rows = [], []
    if args.retime:
        for name in args.models:
            write_csv(out, merge_rows(out, retime(bench, name, args.rounds)))
        return
    if args.staircases_only:
        from hakd import models
        from hakd.baselines.widths import fit_fraction, uniform_plan
        from hakd.passes.groups import find_groups
        from hakd.passes.trace import trace

        timed = bench.results("snap_staircases_time.csv")
        for i, name in enumerate(args.models):
            if args.around == "fisher":
                gm, groups, plan = quick_fisher(name, bench, args.keep)
            else:
                gm = trace(models.create(name, in_channels=bench.shape[1]).eval(), torch.zeros(bench.shape))
                groups = find_groups(gm)
                plan = fit_fraction(lambda f: uniform_plan(groups, f), gm, groups, args.keep, bench.shape)
            for workers in args.build_workers[::-1] if i % 2 else args.build_workers:  # the order alternates by model
                stamp = time.strftime("%Y%m%d-%H%M%S")
                prof = Profiler("host", table=LatencyTable(bench.runs / f"{name}-stairs-{stamp}-w{workers}.sqlite"),
                                build_workers=workers)
                timed_staircases(name, prof, gm, groups, plan, table_rows, f"{args.around} {args.keep} of the parameters")
                write_csv(timed, merge_rows(timed, table_rows, key="run"))
        return
    for name in args.models:
        table = args.table or bench.runs / f"{name}-snap-{time.strftime('%Y%m%d-%H%M%S')}.sqlite"  # empty: cold is cold
        prof = Profiler("host", table=LatencyTable(table))
        gm, groups, importance, plans = students(name, args, prof, table_rows)
        rows += measure(bench, name, gm, groups, importance, plans, prof, args.rounds)
        write_csv(out, merge_rows(out, rows))
        write_csv(stairs_out, merge_rows(stairs_out, table_rows))


if __name__ == "__main__":
    sys.exit(run())
