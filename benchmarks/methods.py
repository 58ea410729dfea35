"""HAKD against Fisher, Deep Compression, L1, uniform, round-to-8 and Torch-Pruning: accuracy and measured latency.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/methods.py [--models resnet20] [--seeds 0,1] \
        [--epochs 1] [--limit-train 20000] [--rounds 7] [--recipe long]

Needs the bench extra (`pip install -e .[bench]`: torch-pruning, onnxruntime) and the real
Fashion-MNIST, or CIFAR-10 from the user's folder (`--data cifar10 --data-root FOLDER`: runs in
runs/bench/cifar10/, results named methods_cifar10.*).
Per model: the teacher and its Fisher plan at --keep of the parameters come from
benchmarks/snap.py's `prepare` (trained and pruned through the CLI when missing, in runs/bench/).
Students, all rebuilt from the same teacher:

- Fisher; HAKD snap up and snap down (the Fisher plan on its staircases); HAKD budget = the
  Fisher student's predicted latency (importance kept); HAKD budget = the predicted latency of
  Torch-Pruning's group-norm round-to-8 student (its fastest); HAKD at that student's parameter
  count (bisection on the budget), keeping importance, and keeping parameters with no group
  below --min-keep of its width (one student per comma-separated value); HAKD at that student's
  latency with the way of spending it (importance or parameters, no floor or each --min-keep)
  chosen by trial as hakd.optimize chooses it (hakd/trials.py: one epoch over 10,000 training
  images each, the most accurate on 5,000 held-out training images kept);
- L1 and uniform at the Fisher student's parameters (bisection on the fraction); round-to-8 (the
  Fisher plan's widths rounded down to multiples of 8 by L1);
- Torch-Pruning 1.6 (its default group-norm importance, and the L1 magnitude of each pruned layer,
  with and without `round_to=8`) at the Fisher student's parameters;

each rebuilt from the teacher's weights and distilled from the teacher (one folder per plan and
seed, named by the plan's digest, so that a changed plan is trained anew) with one recipe (DistillConfig: KD + AT, inherit, --epochs on the
first --limit-train training images, lr 0.01), once per seed. Deep Compression (Han et al.:
magnitude pruning to 90% sparsity with fine-tuning, on the one training loop, same images) keeps
the teacher's dense shape: on a dense backend it runs at the teacher's latency.
Latency: every student exported by hakd (its measured schedules) and by ONNX (ONNX Runtime, one
thread, all optimisations), timed in --rounds interleaved rounds; ratios to the Fisher student per
round, median reported. Writes results/methods.csv, methods.md and methods_<model>.png.
Columns: benchmarks/README.md. ``--recipe long``: four of these students, trained long enough
to tell them apart (benchmarks/recipes.py), into runs/bench/long/ and results/methods_long.*.
"""

import argparse
import copy
import hashlib
import json
import re
import statistics
import sys
import time

import numpy as np
import torch

from hakd import data as datasets
from hakd.baselines.deep_compression import prune_and_finetune
from hakd.baselines.widths import fit_fraction, l1_plan, round_to_multiple, uniform_plan
from hakd.budget import fit_budget
from hakd.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from hakd.config import DataConfig, DistillConfig, TrialConfig
from hakd.cost.profile import Profiler
from hakd.cost.table import LatencyTable
from hakd.distill import distill
from hakd.errors import BudgetError
from hakd.export import export, export_onnx, load
from hakd.passes.counts import count
from hakd.passes.groups import find_groups
from hakd.passes.rebuild import rebuild
from hakd.passes.snap import snap
from hakd.passes.trace import trace
from hakd.plan import PrunePlan
from hakd.prune_folder import load_prune_folder
from hakd.report import pareto_front, plot_accuracy_latency
from hakd.sweep import load_or_measure, predict
from hakd.train import evaluate
from hakd.trials import chosen, spending_ways, try_plans
from backends import time_call  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from cost_model import retimed_prediction_s  # noqa: E402
from common import RESULTS, Bench, add_data_args, merge_rows, onnxruntime_session, progress, write_csv  # noqa: E402
from peers import IMPORTANCE, at_params, plan_from_pruned  # noqa: E402
from recipes import LONG, PEER, PEER_GOAL, accuracy_stats, goals  # noqa: E402
from snap import equal_params_budget, prepare  # noqa: E402


def plans_of(name, args, prof, min_keeps, train, wanted=None):
    """(teacher graph, its groups, {method: plan}) of the methods in ``wanted`` (when None: all but the
    teacher and Deep Compression, with one parameter-keeping student per ``min_keeps`` value). Every
    plan is a choice of the teacher's channels: students are rebuilt from the teacher's weights,
    whatever chose their widths (the Fisher run's own fine-tuned weights are not used), so only the
    widths and channels differ. The plans are saved in runs/bench/methods/<name>/plans.json and
    reused while the Fisher plan is the one they were chosen for (the budget students take many
    minutes); a method not saved yet is chosen, with those it needs, and added to the file."""
    teacher, folder = prepare(name, args)
    base, _, fisher, importance = load_prune_folder(folder)
    shape, log = args.bench.shape, progress(name)
    gm = trace(teacher.eval(), torch.zeros(shape))
    groups = find_groups(gm)
    fisher.validate(groups)
    names = [m for m in method_names(min_keeps) if wanted is None or m in wanted]
    saved = args.bench.runs / "methods" / name / "plans.json"
    plans = read_plans(saved, digest(fisher), groups) or {}
    if any(m not in plans for m in names):
        stairs = load_or_measure(folder / "staircases.json", prof, base, groups, fisher, log=log)
        choosers = plan_choosers(teacher, gm, groups, fisher, stairs, importance, prof, shape, min_keeps, train,
                                 args.bench.runs / "methods" / name / "trials", log)

        def choose(method):
            if method not in plans:
                plans[method] = choosers[method](choose)
            return plans[method]

        for method in names:
            choose(method)
        saved.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, json.dumps(dict(key=dict(fisher=digest(fisher)),
                                                 plans={m: p.to_dict() for m, p in plans.items()}), indent=1) + "\n")
    return gm, groups, {m: plans[m] for m in names}


def method_names(min_keeps) -> list:
    """Every student's method, in the results' order (``min_keeps``: one parameter-keeping student
    at Torch-Pruning's parameters per value).

    >>> method_names([0.5])[-2:]
    ['hakd_budget@params=torch_pruning_group_norm_r8', 'hakd_budget@params=torch_pruning_group_norm_r8,params,min_keep=0.5']
    """
    torch_pruning = [f"torch_pruning_{kind}{suffix}" for kind in IMPORTANCE for suffix in ("", "_r8")]
    return ["fisher", "hakd_snap_up", "hakd_snap_down", "hakd_budget=fisher", "l1", "uniform", "round_to_8",
            *torch_pruning, f"hakd_budget={PEER}", f"hakd_budget={PEER},retimed", f"hakd_budget={PEER_GOAL}*{PEER},retimed",
            f"hakd_budget={PEER_GOAL}*{PEER},onnxruntime",
            f"hakd_trial={PEER}", f"hakd_budget@params={PEER}",
            *(f"hakd_budget@params={PEER},params,min_keep={m:g}" for m in min_keeps)]


def tried_plan(gm, groups, fisher, stairs, importance, prof, peer_plan, min_keeps, train, folder, log):
    """HAKD at the predicted latency of ``peer_plan``, its way of spending that budget chosen as
    ``hakd.optimize`` chooses it (:mod:`hakd.trials`): importance or parameters kept, no floor or
    each of ``min_keeps``, each student distilled one epoch over 10,000 training images (the
    methods' recipe) and the most accurate on 5,000 held-out training images kept. The trials
    are written to ``folder/trials.json``."""
    budget_s, fitted, unreachable = predict(prof, gm, groups, peer_plan), {}, {}
    for way in spending_ways(("importance", "params"), (0.0, *min_keeps)):
        try:
            fitted[way] = fit_budget(prof, gm, groups, fisher, stairs, importance, budget_s, value=way.value,
                                     min_keep=way.min_keep, log=log)
        except BudgetError as e:
            unreachable[way.label] = str(e)
    trials = try_plans(gm, gm, groups, {w: r.plan for w, r in fitted.items()}, train,
                       DistillConfig(epochs=1, lr=0.01, seed=0, threads=1), TrialConfig(), folder, log=log)
    best = chosen(trials)
    atomic_write_text(folder / "trials.json", json.dumps(dict(budget_s=budget_s, chosen=best.label, unreachable=unreachable, trials=[
        dict(t.row(), predicted_s=r.predicted_s, plan=digest(t.plan)) for t, r in zip(trials, fitted.values())]), indent=1))
    return best.plan


def plan_choosers(teacher, gm, groups, fisher, stairs, importance, prof, shape, min_keeps, train, trials, log):
    """{method: function(choose) -> plan}: how each student's widths are chosen, ``choose(method)``
    giving another method's plan (the students at Torch-Pruning's latency or parameters need its
    plan). ``trials``: hakd_trial's folder."""
    params, _ = count(rebuild(gm, groups, fisher), shape)
    full, _ = count(gm, shape)

    def budget(seconds):
        return fit_budget(prof, gm, groups, fisher, stairs, importance, seconds, log=log).plan

    def torch_pruning(kind, round_to):
        student, _ = at_params(teacher, shape, params, round_to, kind)
        return plan_from_pruned(teacher, student, groups)

    def at_peer_params(choose, **how):  # bisection on the budget between 0.2x and 1x the teacher's latency
        peer_params, _ = count(rebuild(gm, groups, choose(PEER)), shape)
        teacher_s = predict(prof, gm, groups, groups.plan())
        return equal_params_budget(prof, gm, groups, fisher, stairs, importance, peer_params, 0.2 * teacher_s, teacher_s,
                                   shape, log=log, **how).plan

    choosers = {"fisher": lambda c: fisher,
                "hakd_snap_up": lambda c: snap(fisher, stairs, importance, "up"),
                "hakd_snap_down": lambda c: snap(fisher, stairs, importance, "down"),
                "hakd_budget=fisher": lambda c: budget(predict(prof, gm, groups, fisher)),
                "l1": lambda c: fit_fraction(lambda f: l1_plan(gm, groups, f), gm, groups, params / full, shape),
                "uniform": lambda c: fit_fraction(lambda f: uniform_plan(groups, f), gm, groups, params / full, shape),
                "round_to_8": lambda c: round_to_multiple(fisher, groups, gm, 8, "down")}
    for kind in IMPORTANCE:
        for round_to in (None, 8):
            choosers[f"torch_pruning_{kind}{'_r8' if round_to else ''}"] = lambda c, k=kind, r=round_to: torch_pruning(k, r)
    choosers[f"hakd_budget={PEER}"] = lambda c: budget(predict(prof, gm, groups, c(PEER)))
    # the same, its budget the peer's kernels timed afresh on a new table (entries timed minutes earlier can be off),
    # once per run: both methods that use it take their budgets from the same spell of the machine
    retimed = {}

    def peer_retimed(choose):
        if PEER not in retimed:
            retimed[PEER] = retimed_prediction_s(trace(rebuild(gm, groups, choose(PEER)), torch.zeros(shape)), prof)
        return retimed[PEER]

    def peer_onnxruntime(choose):  # what a Torch-Pruning user deploys: its student on ONNX Runtime, on this host
        path = export_onnx(rebuild(gm, groups, choose(PEER)), trials.parent / "peer_onnxruntime.onnx", torch.zeros(shape))
        session, x = onnxruntime_session(path), np.zeros(shape, np.float32)
        seconds = statistics.median(time_call(lambda a: session.run(None, {"input": a}), x) for _ in range(7))
        log(f"{PEER} on ONNX Runtime: {seconds * 1e6:.1f} us (median of 7 batches of calls)")
        return seconds

    choosers[f"hakd_budget={PEER},retimed"] = lambda c: budget(peer_retimed(c))
    choosers[f"hakd_budget={PEER_GOAL}*{PEER},onnxruntime"] = lambda c: budget(PEER_GOAL * peer_onnxruntime(c))
    choosers[f"hakd_budget={PEER_GOAL}*{PEER},retimed"] = lambda c: budget(PEER_GOAL * peer_retimed(c))
    choosers[f"hakd_trial={PEER}"] = lambda c: tried_plan(gm, groups, fisher, stairs, importance, prof, c(PEER), min_keeps,
                                                          train, trials, log)
    choosers[f"hakd_budget@params={PEER}"] = at_peer_params
    for m in min_keeps:
        choosers[f"hakd_budget@params={PEER},params,min_keep={m:g}"] = (
            lambda c, m=m: at_peer_params(c, value="params", min_keep=m))
    return choosers


def read_plans(path, fisher_digest, groups):
    """The {method: plan} saved at ``path`` if they were chosen for the Fisher plan of
    ``fisher_digest`` (each checked against ``groups``), else None."""
    data = json.loads(path.read_text()) if path.is_file() else None
    if data is None or data["key"]["fisher"] != fisher_digest:
        return None
    plans = {m: PrunePlan.from_dict(p, where=f"{path}: {m}") for m, p in data["plans"].items()}
    for plan in plans.values():
        plan.validate(groups)
    return plans


def digest(plan) -> str:
    """A plan's short hash: another plan is another student (and another training folder)."""
    return hashlib.sha1(plan.to_json().encode()).hexdigest()[:8]


def trained_students(name, args, gm, groups, plans, train, test):
    """{method: {seed: (student graph, test accuracy, seconds per epoch or None)}}: every plan
    distilled once per seed, Deep Compression, and (unless ``args.train_only``) the teacher."""
    out, root = {}, args.bench.runs / "methods" / name / (args.study or "")
    for method, plan in plans.items():
        for seed in args.seeds:
            config = DistillConfig(epochs=args.epochs, lr=0.01, seed=seed, threads=args.threads)
            student = rebuild(gm, groups, plan)
            folder = root / f"{method.replace('=', '-')}-{digest(plan)}-s{seed}"
            history = distill(gm, student, train, test, config, folder, resume=True, progress=False)
            seconds = statistics.fmean(h["seconds"] for h in history)
            out.setdefault(method, {})[seed] = (student.eval(), history[-1]["test_acc"], seconds)
            print(f"{name} {method} seed {seed}: {history[-1]['test_acc']:.4f} ({seconds:.0f} s per epoch)", flush=True)
    if args.only is None or "deep_compression" in args.only:
        for seed in args.seeds:
            out.setdefault("deep_compression", {})[seed] = deep_compression(name, args, gm, train, test, seed)
    if not args.train_only:
        out["teacher"] = {seed: (gm, evaluate(gm.eval(), test)[1], None) for seed in args.seeds}
    return out


def deep_compression(name, args, gm, train, test, seed):
    """(the teacher pruned by magnitude to 90% sparsity and fine-tuned, its test accuracy), saved
    in runs/bench/methods/<name>/deep_compression-<steps>x3-s<seed>/ and loaded from there when it exists."""
    steps = max(1, args.epochs * len(train.images) // 128 // 3)  # the same images over three sparsity stages
    saved = args.bench.runs / "methods" / name / f"deep_compression-{steps}x3-s{seed}" / "model.pt"
    dense = copy.deepcopy(gm).train()
    if saved.is_file():
        state = load_checkpoint(saved)
        dense.load_state_dict(state["model"])
        return dense.eval(), state["test_acc"], None
    prune_and_finetune(dense, train, schedule=(0.5, 0.75, 0.9), steps_per_stage=steps, lr=0.01, seed=seed)
    acc = evaluate(dense.eval(), test)[1]
    saved.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint({"model": dense.state_dict(), "test_acc": acc}, saved)
    print(f"{name} deep_compression seed {seed}: {acc:.4f}", flush=True)
    return dense, acc, None


def latencies(bench, name, students, prof, rounds):
    """{method: (hakd seconds per round, ONNX Runtime seconds per round, predicted s, export error)} for seed 0's student."""
    calls, meta = {}, {}
    x = np.random.default_rng(0).standard_normal(bench.shape).astype(np.float32)
    for method, by_seed in students.items():
        student = next(iter(by_seed.values()))[0]
        folder = bench.runs / "methods" / name / "exports" / method.replace("=", "-")
        result = export(trace(student, torch.zeros(bench.shape)), folder, prof)
        session = onnxruntime_session(export_onnx(student, folder / "model.onnx", torch.zeros(bench.shape)))
        calls[method] = (load(folder), lambda a, s=session: s.run(None, {"input": a})[0])
        meta[method] = (result.predicted_latency_s, result.max_abs_error)
    times = {m: ([], []) for m in calls}
    for r in range(rounds):
        order = list(calls)[r % len(calls):] + list(calls)[:r % len(calls)]
        for method in order:
            for i, fn in enumerate(calls[method]):
                times[method][i].append(time_call(fn, x, 0.2))
    return {m: (*times[m], *meta[m]) for m in calls}


def rows_of(name, args, gm, groups, plans, students, timing):
    base_hakd, base_ort = timing["fisher"][0], timing["fisher"][1]
    peer_ort = timing[PEER][1] if PEER in timing else None  # what a Torch-Pruning user deploys
    fisher_params, _ = count(rebuild(gm, groups, plans["fisher"]), args.bench.shape)
    rows = []
    for method, by_seed in students.items():
        model = next(iter(by_seed.values()))[0]
        params, macs = count(model, args.bench.shape)
        if method == "deep_compression":  # its zeros are stored sparsely; its dense shape is the teacher's
            params = int(sum(int((p != 0).sum()) for p in model.parameters()))
        accs, seconds = [acc for _, acc, _ in by_seed.values()], [s for _, _, s in by_seed.values() if s is not None]
        mean, std, se = accuracy_stats(accs)
        hakd_s, ort_s, predicted, error = timing[method]
        over = lambda ts, base: statistics.median(t / b for t, b in zip(ts, base))  # noqa: E731
        rows.append(dict(model=name, method=method, params=params, params_over_fisher=f"{params / fisher_params:.3f}", macs=macs,
                         accuracy_mean=f"{mean:.4f}", accuracy_spread=f"{max(accs) - min(accs):.4f}",
                         seeds=len(accs), hakd_us=f"{statistics.median(hakd_s) * 1e6:.1f}",
                         hakd_over_fisher=f"{over(hakd_s, base_hakd):.3f}", onnxruntime_us=f"{statistics.median(ort_s) * 1e6:.1f}",
                         onnxruntime_over_fisher=f"{over(ort_s, base_ort):.3f}",
                         hakd_over_peer_onnxruntime=f"{over(hakd_s, peer_ort):.3f}" if peer_ort else "", predicted_us=f"{predicted * 1e6:.1f}",
                         macs_per_us_hakd=f"{macs / (statistics.median(hakd_s) * 1e6):.0f}", max_abs_error=f"{error:.1e}",
                         recipe=f"distil KD+AT {args.epochs} epoch(s) x {args.train_images} images, lr 0.01{schedule(args)}"
                         if method not in ("teacher", "deep_compression") else
                         (f"teacher, {args.teacher_epochs} epoch(s)" if method == "teacher" else "magnitude 50/75/90% + fine-tune, same images"),
                         accuracy_std=f"{std:.4f}", accuracy_se=f"{se:.4f}", accuracies=";".join(f"{a:.4f}" for a in accs),
                         seconds_per_epoch=f"{statistics.fmean(seconds):.1f}" if seconds else ""))
        print(rows[-1], flush=True)
    return rows


def schedule(args) -> str:
    """The students' learning-rate drops, as the recipe column says them ("" for one epoch)."""
    drops = DistillConfig(epochs=args.epochs).milestone_epochs()
    return f", x0.2 after epoch(s) {', '.join(map(str, drops))}" if drops else ""


def write_results(bench, rows):
    """results/methods.csv, methods.md and one Pareto PNG per model (``bench.results`` names them
    for the data set), from the rows (each model's Pareto front of accuracy against hakd's measured
    latency decides its ``pareto_front`` column)."""
    for name in dict.fromkeys(r["model"] for r in rows):
        mine = [r for r in rows if r["model"] == name]
        points = [(r["method"], float(r["hakd_us"]) * 1e-6, float(r["accuracy_mean"])) for r in mine]
        front = pareto_front(points)
        for r in mine:
            r["pareto_front"] = "yes" if r["method"] in front else "no"
        plot_accuracy_latency(points, RESULTS / bench.results(f"methods_{name}.png"),
                              f"{name} on {bench.data}: accuracy (mean of {mine[0]['seeds']} seeds) against latency "
                              "measured with hakd's compiled backend, 1 thread, batch 1")
    write_csv(bench.results("methods.csv"), rows)
    keys = ["model", "method", "params_over_fisher", "accuracy_mean", "accuracy_spread", "hakd_us", "hakd_over_fisher",
            "onnxruntime_us", "onnxruntime_over_fisher", "hakd_over_peer_onnxruntime", "pareto_front"]
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(str(r.get(k, "")) for k in keys) + " |" for r in rows]
    if bench.recipe == "long":
        lines += ["", "Accuracy: mean of the seeds; SE: the standard error of a difference of two means.", "", *goals(rows)]
    (RESULTS / bench.results("methods.md")).write_text("\n".join(lines) + "\n")


def tag_name(text: str) -> str:
    """--tag's value: a name for a folder and a file name's part.

    >>> tag_name("avx2")
    'avx2'
    """
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", text):
        raise ValueError(text)
    return text


def fractions(text: str) -> list:
    """--min-keep's values: comma-separated fractions in (0, 1]."""
    values = [float(v) for v in text.split(",")]
    if not all(0 < v <= 1 for v in values):
        raise ValueError(text)
    return values


def run():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", nargs="+", default=["resnet20"])
    ap.add_argument("--seeds", default="0,1")
    ap.add_argument("--epochs", type=int, default=1, help="distillation epochs of every student")
    ap.add_argument("--limit-train", type=int, default=20000, help="training images every student sees per epoch")
    ap.add_argument("--teacher-epochs", dest="teacher_epochs", type=int, default=2)
    ap.add_argument("--keep", type=float, default=0.5, help="Fisher: fraction of the parameters kept")
    ap.add_argument("--prune-every", type=int, default=10)
    ap.add_argument("--fisher-batch", type=int, default=128, help="Fisher: images per fine-tuning step")
    ap.add_argument("--rounds", type=int, default=7)
    add_data_args(ap)
    ap.add_argument("--min-keep", type=fractions, default=[0.25],
                    help="the parameter-keeping HAKD students at Torch-Pruning's parameters, one per comma-separated "
                         "value: no group below that fraction of its width")
    ap.add_argument("--plans-only", action="store_true",
                    help="only choose every student's widths (measuring what the table lacks) and print them: run it "
                         "once before parallel --train-only runs so that they all find the same plans")
    ap.add_argument("--train-only", action="store_true",
                    help="only distil the students (resumable, one folder per method and seed): runs with disjoint "
                         "--seeds can share the machine's cores; a final run without it reuses them")
    ap.add_argument("--only", nargs="+", default=None, metavar="METHOD",
                    help="choose, distil and time only these methods (names as in methods.csv, which may hold "
                         "commas), e.g. torch_pruning_group_norm_r8 deep_compression; a timed run adds fisher and the "
                         "teacher, and its rows replace all of the model's rows in the results")
    ap.add_argument("--study", default=None,
                    help="with --train-only: distil into runs/bench/methods/<model>/<STUDY>/ (its own folders, "
                         "for another recipe; plans and latency table shared) and print the accuracies")
    ap.add_argument("--replot", action="store_true",
                    help="only rewrite methods.md, the Pareto column and the PNGs from results/methods.csv")
    ap.add_argument("--build-workers", type=int, default=1,
                    help="processes compiling kernels for the staircases and exports (timing stays in this one)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads of each distillation (and of the teacher and Fisher runs it makes)")
    ap.add_argument("--recipe", choices=("short", "long"), default="short",
                    help="long: a 15-epoch teacher on all 60,000 images and four students (Fisher, HAKD at its latency, "
                         "Torch-Pruning round_to=8, HAKD at its latency) distilled 5 epochs each with a learning-rate "
                         "schedule, 3 seeds (benchmarks/recipes.py); its own runs (runs/bench/long/) and results "
                         "(methods_long.*); options given on the command line still win")
    ap.add_argument("--tag", default="", type=tag_name,
                    help="its own runs (runs/bench/TAG/) and results (methods_TAG.*), e.g. the host's ISA for a run "
                         "on another kind of host, whose latencies are not comparable with the main results'")
    args = ap.parse_args()
    if args.recipe == "long":
        ap.set_defaults(**LONG)
        args = ap.parse_args()
    args.bench = bench = Bench(args.data, args.data_root, "" if args.recipe == "short" else args.recipe, args.tag)
    if args.replot:
        return write_results(bench, merge_rows(bench.results("methods.csv"), []))
    if args.study and not args.train_only:
        ap.error("--study needs --train-only: the timed run times the students of the main study")
    unknown = set(args.only or ()) - set(method_names(args.min_keep)) - {"teacher", "deep_compression"}
    if unknown:
        ap.error(f"--only: no method {', '.join(sorted(unknown))}; the methods are {', '.join(method_names(args.min_keep))}, "
                 "deep_compression")
    if args.only is not None and not args.train_only:
        args.only = ["fisher", *args.only]  # the timed run's ratios are to the Fisher student
    args.seeds = [int(s) for s in args.seeds.split(",")]
    teacher_args = argparse.Namespace(epochs=args.teacher_epochs, keep=args.keep, prune_every=args.prune_every,
                                      fisher_batch=args.fisher_batch, bench=bench, threads=args.threads)
    torch.set_num_threads(args.threads)
    train, test = datasets.load(DataConfig(bench.data, root=bench.root, limit_train=args.limit_train))
    args.train_images = len(train.images)
    rows = []
    for name in args.models:
        t0 = time.time()
        (bench.runs / "methods").mkdir(parents=True, exist_ok=True)
        prof = Profiler("host", table=LatencyTable(bench.runs / "methods" / f"{name}.sqlite"), build_workers=args.build_workers)
        gm, groups, plans = plans_of(name, teacher_args, prof, args.min_keep, train, args.only)
        if args.plans_only:
            for method, plan in plans.items():
                print(name, method, digest(plan),
                      " ".join(str(plan.width(g.name)) for g in groups.prunable()), flush=True)
            continue
        students = trained_students(name, args, gm, groups, plans, train, test)
        if args.train_only:
            continue
        timing = latencies(bench, name, students, prof, args.rounds)
        rows += rows_of(name, args, gm, groups, plans, students, timing)
        write_results(bench, merge_rows(bench.results("methods.csv"), rows))
        print(f"{name}: {time.time() - t0:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    run()
