"""``hakd`` subcommands that decide widths: prune, staircases, snap.

    hakd prune --run runs/r20 --target params --amount 0.5 --out runs/fisher
    hakd prune --run runs/r20 --target latency --amount 0.6 --hw-target host --out runs/fisher-lat
    hakd staircases runs/fisher --target host          # every group's staircase around the plan
    hakd snap runs/fisher --mode up --out runs/snap-up
    hakd snap runs/fisher --budget 0.5 --out runs/budget   # half the unpruned model's predicted latency

A prune folder holds ``plan.json``, ``base.pt`` (the full-width model the plan applies to),
``model.pt`` (the pruned model), ``importance.json`` (a score per channel: Fisher saliency,
or L1 norms for the baselines) and, once measured, ``staircases.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from hakd.cli.inputs import add_build_workers, add_training_device, output_folder, profiler, traced_model
from hakd.errors import ConfigError
from hakd.passes.trace import input_shape
from hakd.prune_folder import BASE, IMPORTANCE, MODEL, PLAN, STAIRS, load_prune_folder, write_prune_folder

__all__ = ["add_prune_commands"]

SUMMARY = "snap.json"
PRUNE_OUTPUT = {BASE, MODEL, PLAN, IMPORTANCE, STAIRS, "state.pt", "history.json", "unpruned-staircases.json"}


def _write(out: Path, base, groups, plan, importance, note: str) -> None:
    """Write a prune folder and say what it holds."""
    counts = write_prune_folder(out, base, groups, plan, importance)
    params, macs = counts["params"], counts["macs"]
    print(f"{note}: plan in {out / PLAN}, pruned model in {out / MODEL}: {params:,} parameters "
          f"({params / counts['full_params']:.1%}), {macs:,} MACs ({macs / counts['full_macs']:.1%})")
    for g, w in plan.pruned_widths().items():
        if w != plan.widths[g]:
            print(f"  {g:32s} {plan.widths[g]:5d} -> {w}")


def _prune(args):
    from hakd import data
    from hakd.baselines.widths import fit_fraction, l1_importance, l1_plan, round_to_multiple, uniform_plan
    from hakd.config import DataConfig, PruneConfig
    from hakd.passes.fisher import fisher_prune
    from hakd.passes.groups import find_groups
    from hakd.train import run_config

    out = Path(args.out)
    held = [f for f in (PLAN, MODEL, "state.pt") if (out / f).exists()]
    resuming = args.resume and args.method == "fisher" and not args.overwrite
    if held and not resuming and not args.overwrite:
        raise ConfigError(f"{out} already holds a prune run ({', '.join(held)}); choose another --out, continue a Fisher "
                          "run with --resume, or pass --overwrite to replace it")
    output_folder(out, PRUNE_OUTPUT, "hakd prune", overwrite=args.overwrite, keep=resuming)
    if args.round < 0:
        raise ConfigError(f"--round is a multiple of channels (>= 1), or 0 for no rounding; got {args.round}")
    if args.method != "fisher":  # every method's amount is checked the same way
        PruneConfig(target=args.target, amount=args.amount)
    gm, what = traced_model(args)
    groups = find_groups(gm)
    widest = max((g.width for g in groups.prunable()), default=0)
    if args.round and args.round >= widest:
        raise ConfigError(f"--round {args.round} is not below the widest prunable group ({widest} channels): every "
                          "group would round to all its channels, undoing the pruning; round to a smaller multiple, "
                          "such as 8 (or 0: no rounding)")
    if args.method == "fisher":
        if not args.run:
            raise ConfigError("Fisher pruning fine-tunes a trained model: pass --run RUN_FOLDER (from `hakd train`)")
        run_data = run_config(args.run)["data"]
        train, _ = data.load(DataConfig(run_data["name"], root=run_data.get("root"), limit_train=args.limit_train))
        amount, latency_of, latency_saved = args.amount, None, None
        if args.target == "latency" or args.penalty_on == "latency":
            from hakd import sweep

            prof = profiler(args, args.hw_threads)
            full_s = prof.model(gm).latency_s
            if args.target == "latency":
                if not 0 < args.amount <= 1:
                    raise ConfigError(f"--target latency: --amount is the fraction of the unpruned model's predicted "
                                      f"latency to keep, in (0, 1]; got {args.amount}")
                amount, latency_of = args.amount * full_s, sweep.latency_of(prof, gm, groups)
                print(f"latency target: {args.amount} x {full_s * 1e6:.1f} us = {amount * 1e6:.1f} us on {prof.target_key}")
            if args.penalty_on == "latency":
                stairs = sweep.load_or_measure(out / "unpruned-staircases.json", prof, gm, groups, None)
                latency_saved = sweep.latency_saved(stairs, full_s, groups.slices())
        config = PruneConfig(target=args.target, amount=amount, prune_every=args.prune_every, batch_size=args.batch_size,
                             penalty=args.penalty, penalty_on=args.penalty_on, threads=args.threads,
                             device=args.train_device, precision=args.precision)
        result = fisher_prune(gm, groups, train, config, out, resume=args.resume, latency_of=latency_of,
                              latency_saved=latency_saved)
        gm, plan, importance = result.model, result.plan, result.importance
    else:
        if args.target != "params":
            raise ConfigError(f"--method {args.method} prunes to a parameter fraction: use --target params")
        make = (lambda f: l1_plan(gm, groups, f)) if args.method == "l1" else (lambda f: uniform_plan(groups, f))
        plan, importance = fit_fraction(make, gm, groups, args.amount, input_shape(gm)), l1_importance(gm, groups)
    if args.round:
        plan = round_to_multiple(plan, groups, gm, args.round, args.round_mode)
    _write(out, gm, groups, plan, importance, f"{what}: {args.method}")


def _staircases(args):
    from hakd import sweep
    from hakd.staircases import Staircases

    gm, groups, plan, _ = load_prune_folder(args.folder)
    prof = profiler(args, args.hw_threads)
    only = args.groups.split(",") if args.groups else None
    path = Path(args.folder) / STAIRS
    previous = Staircases.load(path) if path.is_file() else None
    stairs = sweep.model_staircases(prof, gm, groups, plan, only=only, previous=previous, save_to=path, tol=args.tol)
    print(f"staircases of {len(stairs.groups)} groups around {args.folder}/{PLAN} on {prof.target_key}: {path} "
          f"({prof.compiles} kernels compiled, {prof.table_hits} from the table)")
    for g, st in stairs.groups.items():
        print(f"  {g:32s} width {st.width:4d}/{st.full_width:<4d} {st.at(st.width) * 1e6:9.1f} us  optimal {list(st.optimal)}")


def _snap(args):
    from hakd import sweep
    from hakd.budget import fit_budget
    from hakd.passes.allocate import check_min_keep
    from hakd.passes.snap import snap

    out = Path(args.out)
    if out.exists() and out.is_dir() and any(out.iterdir()) and not args.overwrite:
        raise ConfigError(f"{out} is not empty; choose another --out, or pass --overwrite to replace what it holds")
    output_folder(out, PRUNE_OUTPUT | {SUMMARY}, "hakd snap", overwrite=args.overwrite)
    if args.budget is not None and args.budget_us is not None:
        raise ConfigError("give the budget once: --budget F (a fraction) or --budget-us N (microseconds)")
    if args.mode is None and args.budget is None and args.budget_us is None:
        raise ConfigError("say what to do: --mode up|down|nearest, or a latency budget (--budget F or --budget-us N)")
    if args.budget_us is not None and not 0 < args.budget_us < float("inf"):
        raise ConfigError(f"--budget-us is a latency in microseconds (> 0, finite); got {args.budget_us}")
    if args.mode and (args.budget is not None or args.budget_us is not None):
        raise ConfigError("--mode snaps each width; --budget allocates them all: give one of the two")
    check_min_keep(args.min_keep)
    if args.budget is not None and not 0 < args.budget <= 1:
        raise ConfigError(f"--budget is a fraction of the unpruned model's predicted latency, in (0, 1]; got {args.budget}")
    gm, groups, plan, importance = load_prune_folder(args.folder)
    prof = profiler(args, args.hw_threads)
    stairs = sweep.load_or_measure(Path(args.folder) / STAIRS, prof, gm, groups, plan)
    before_s = sweep.predict(prof, gm, groups, plan)
    summary = {"from": str(args.folder), "target": prof.target_key, "threads": prof.measure.threads,
               "context": stairs.context, "before_s": before_s}
    if args.mode:
        new = snap(plan, stairs, importance, args.mode)
        summary["mode"] = args.mode
    else:
        unpruned_s = sweep.predict(prof, gm, groups, groups.plan())
        budget_s = args.budget * unpruned_s if args.budget is not None else args.budget_us * 1e-6
        result = fit_budget(prof, gm, groups, plan, stairs, importance, budget_s, value=args.value, min_keep=args.min_keep)
        new, stairs = result.plan, result.staircases
        summary.update(budget_s=budget_s, unpruned_s=unpruned_s, value=args.value, min_keep=args.min_keep,
                       rounds=result.rounds)
    after_s = sweep.predict(prof, gm, groups, new)
    summary.update(after_s=after_s, widths={g: [plan.width(g), new.width(g)] for g in plan.widths})
    out.mkdir(parents=True, exist_ok=True)
    _write(out, gm, groups, new, importance, new.note)
    if not stairs.stale_groups(new.pruned_widths()):  # still fresh around the new plan: no need to measure them again
        stairs.save(out / STAIRS)
    from hakd.checkpoint import atomic_write_text

    atomic_write_text(out / SUMMARY, json.dumps(summary, indent=1))
    print(f"predicted latency on {prof.target_key}: {before_s * 1e6:.1f} us -> {after_s * 1e6:.1f} us "
          f"({after_s / before_s:.3f}x); summary in {out / SUMMARY}")


def add_prune_commands(sub) -> None:
    from hakd.config import PENALTIES, PRUNE_TARGETS
    from hakd.passes.allocate import VALUES
    from hakd.passes.snap import MODES

    from hakd.cost.table import DEFAULT_TABLE

    def cost_args(p, flag):
        p.add_argument(flag, dest="hw_target", default="host", help='hardware target, e.g. host, "llvm -mcpu=cortex-a57"')
        p.add_argument("--device", default=None, help="local (default) or rpc://HOST:PORT/KEY")
        p.add_argument("--table", default=str(DEFAULT_TABLE), help="latency table (SQLite)")
        p.add_argument("--hw-threads", type=int, default=1, help="threads the hardware target runs with (default 1)")
        add_build_workers(p)

    p = sub.add_parser("prune", help="decide layer widths: Fisher pruning or a baseline; writes a prune folder")
    p.add_argument("model", nargs="?", help="zoo model name (baselines only; Fisher needs --run)")
    p.add_argument("--run", help="a `hakd train` run folder: its trained model")
    p.add_argument("--data", default="fashion-mnist", choices=["fashion-mnist", "cifar10"])
    p.add_argument("--method", default="fisher", choices=["fisher", "l1", "uniform"])
    p.add_argument("--target", default="params", choices=PRUNE_TARGETS)
    p.add_argument("--amount", type=float, default=0.5,
                   help="fraction of params/MACs/predicted latency to keep, or channels to keep")
    p.add_argument("--prune-every", type=int, default=100, help="Fisher: fine-tuning steps between removals")
    p.add_argument("--batch-size", type=int, default=128, help="Fisher: images per fine-tuning step")
    p.add_argument("--penalty", type=float, default=0.0, help="Fisher: penalised variant's weight on what a channel saves")
    p.add_argument("--penalty-on", default="params", choices=PENALTIES, help="Fisher: the penalty counts parameters or latency")
    p.add_argument("--round", type=int, default=0, help="round widths to this multiple (Torch-Pruning style)")
    p.add_argument("--round-mode", default="down", choices=["down", "up"])
    p.add_argument("--limit-train", type=int, default=None)
    p.add_argument("--threads", type=int, default=None, help="torch threads for fine-tuning")
    add_training_device(p)
    p.add_argument("--out", required=True)
    p.add_argument("--resume", action="store_true", help="continue the Fisher run in --out")
    p.add_argument("--overwrite", action="store_true", help="replace the prune run --out holds")
    cost_args(p, "--hw-target")
    p.set_defaults(handler=_prune, model_file=None)

    p = sub.add_parser("staircases", help="measure every group's staircase around a prune folder's plan")
    p.add_argument("folder", help="a prune folder (from `hakd prune` or `hakd snap`)")
    p.add_argument("--groups", help="comma-separated groups (default: every prunable group)")
    p.add_argument("--tol", type=float, default=None, help="noise tolerance (default 0.04)")
    cost_args(p, "--target")
    p.set_defaults(handler=_staircases)

    p = sub.add_parser("snap", help="snap a plan's widths to staircase optima, or fit a latency budget")
    p.add_argument("folder", help="a prune folder (from `hakd prune`); its staircases are measured if missing or stale")
    p.add_argument("--mode", choices=MODES, help="up: capacity for free; down: speed for free; nearest")
    p.add_argument("--budget", type=float, help="latency budget as a fraction of the unpruned model's predicted latency")
    p.add_argument("--budget-us", type=float, help="latency budget in microseconds")
    p.add_argument("--value", default="importance", choices=VALUES, help="what the budget keeps most of")
    p.add_argument("--min-keep", type=float, default=0.0,
                   help="with a budget: no group keeps less than this fraction of its channels (default 0)")
    p.add_argument("--out", required=True, help="a new prune folder for the result")
    p.add_argument("--overwrite", action="store_true", help="replace what --out holds")
    cost_args(p, "--target")
    p.set_defaults(handler=_snap)
