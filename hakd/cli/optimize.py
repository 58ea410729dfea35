"""``hakd optimize`` (the whole pipeline, through :func:`hakd.optimize`) and ``hakd diagnose``.

    hakd optimize --run runs/r20 --target host --budget 0.6 --epochs 30 --out runs/hakd   # 3 ways tried, the best kept
    hakd optimize --run runs/r20 --budget 0.6 --ways importance uniform ...   # try 2 ways; one way: no trial
    hakd optimize --model torchvision.models:resnet18 --num-classes 10 --input-shape 3,32,32 --data cifar10 ...
    hakd optimize --model-file my_model.pt --data fashion-mnist --snap up --out runs/hakd
    hakd diagnose --model-file pruned.pt --target host     # which layers sit just past a step
"""

from __future__ import annotations

from pathlib import Path

from hakd.cli.inputs import (INPUTS, add_build_workers, add_training_device, fractions, names, profiler, unpruned_model,
                             user_model)
from hakd.config import TrialConfig
from hakd.errors import ConfigError

__all__ = ["add_optimize_commands"]


def _optimize(args):
    import hakd
    from hakd.config import DataConfig, DistillConfig, PruneConfig
    from hakd.train import run_config

    budgeted = args.budget is not None or args.budget_us is not None
    if args.snap and budgeted:
        raise ConfigError(f"--snap {args.snap} and {'--budget' if args.budget is not None else '--budget-us'} are two ways "
                          "to choose the widths: give one (a budget chooses every width at once)")
    model, shape, what = user_model(args)
    if args.run:
        run = run_config(args.run)["data"]
        data = DataConfig(run["name"], root=args.data_root or run.get("root"), limit_train=args.limit_train,
                          limit_test=args.limit_test)
    else:
        data = DataConfig(args.data, root=args.data_root, limit_train=args.limit_train, limit_test=args.limit_test)
    trains_on = dict(threads=args.torch_threads, device=args.train_device, precision=args.precision)
    prune = PruneConfig(target="params", amount=args.amount, prune_every=args.prune_every, **trains_on)
    distill = DistillConfig(epochs=args.epochs, init=args.init, lr=args.lr, **trains_on)
    import torch

    print(f"optimizing {what} for {args.target} into {args.out}")
    result = hakd.optimize(model, args.target, data, example_input=torch.zeros(1, *shape), prune=prune,
                           snap=args.snap or ("up" if not budgeted else None), budget=args.budget,
                           budget_s=args.budget_us * 1e-6 if args.budget_us is not None else None,
                           ways=args.ways, value=args.value,
                           min_keep=fractions(args.min_keep, "--min-keep") if args.min_keep is not None else None,
                           trial=TrialConfig(images=args.trial_images, held_out=args.held_out), distill=distill,
                           simple_answer=args.simple_answer, device=args.device, table=args.table,
                           threads=args.threads, tune_trials=args.tune_trials, build_workers=args.build_workers,
                           out=args.out)
    m = result.report["models"]
    for name, row in m.items():
        lat = row["measured_s"] or row["predicted_s"]
        print(f"  {name:15s} {row['params']:>10,} parameters  {lat * 1e6:9.1f} us  accuracy {row['accuracy']:.4f}")
    from hakd.report import simple_answer, widths_chosen

    print(widths_chosen(result.report))
    if simple_answer(result.report):
        print(simple_answer(result.report))
    print(f"report: {Path(args.out) / 'report' / 'report.md'}; compiled student: {result.export.library}; "
          f"ONNX: {Path(args.out) / 'export' / 'model.onnx'}")


def _diagnose(args):
    import torch

    from hakd.diagnose import diagnose

    model, shape, what = user_model(args)
    unpruned = unpruned_model(args.unpruned, args.data) if args.unpruned else None
    prof = profiler(args, args.threads, target=args.target)
    only = args.groups.split(",") if args.groups else None
    d = diagnose(model, torch.zeros(1, *shape), prof, headroom=args.headroom, only=only, unpruned=unpruned)
    print(f"{what} on {prof.target_key}, {args.threads} thread(s): predicted {d.latency_s * 1e6:.1f} us, "
          f"{d.params:,} parameters")
    print(f"  {'group':32s} {'width':>5s} {'latency us':>10s}  verdict")
    for r in sorted(d.rows, key=lambda r: -r["saving_s"]):
        detail = ""
        if r["saving_s"] > 0:
            detail += f"; {r['width'] - r['down_width']} fewer save {r['saving_s'] * 1e6:.1f} us ({r['saving_fraction']:.0%})"
        if r["free_channels"] > 0:
            detail += f"; {r['free_channels']} more cost nothing"
        print(f"  {r['group']:32s} {r['width']:5d} {r['latency_s'] * 1e6:10.1f}  {r['verdict']}{detail}")
    print(f"every group snapped down: {d.down_s * 1e6:.1f} us ({d.down_s / d.latency_s:.3f}x); snapped up: "
          f"{d.up_s * 1e6:.1f} us ({d.up_s / d.latency_s:.3f}x) with {d.up_params:,} parameters ({d.up_params / d.params:.2f}x)")
    if d.not_widened:
        print(f"measured only up to their own width (cannot be widened): {', '.join(d.not_widened)}")
    if d.uniform is not None:
        from hakd.report import uniform_at_latency

        print(uniform_at_latency(d.uniform, d.params, d.latency_s))
    if args.plot_dir:
        from hakd.report import measured_on, plot_staircase

        caption = measured_on(prof.target_key, args.threads, d.staircases.context,
                              f"{prof.measure.number} x {prof.measure.repeat}")
        for r in d.rows:
            st = d.staircases[r["group"]]
            plot_staircase(st.curve, st.latency, st.optimal, Path(args.plot_dir) / f"{r['group'].replace('.', '_')}.png",
                           r["group"], caption, {"now": r["width"], "down": r["down_width"], "up": r["up_width"]})
        print(f"plots: {args.plot_dir}")


def add_optimize_commands(sub) -> None:
    from hakd.cost.table import DEFAULT_TABLE

    p = sub.add_parser("optimize", help="the whole HAKD pipeline: Fisher, staircases, snap or budget, distil, export, report",
                       description="Make a trained CNN fast on a target: Fisher-prune it to learn how wide each layer "
                                   "needs to be, measure every layer's latency staircase with TVM on the target, move "
                                   "each width to an optimal point (--snap) or spend a latency budget (--budget), "
                                   "retrain the student from the model by distillation, export it, write a report.")
    src = p.add_argument_group("the model (one of)")
    src.add_argument("--run", help="a `hakd train` run folder (its model and data set)")
    src.add_argument("--model", help="PACKAGE.MODULE:FACTORY imported from this environment, e.g. torchvision.models:resnet18")
    src.add_argument("--model-file", help="a saved nn.Module (torch.save(model, FILE))")
    src.add_argument("--weights", help="with --model: a state dict to load")
    src.add_argument("--num-classes", type=int, help="with --model: passed to the factory")
    src.add_argument("--input-shape", help="C,H,W of one input (default: the data set's)")
    p.add_argument("--data", default="fashion-mnist", choices=sorted(INPUTS), help="data set (with --model/--model-file)")
    p.add_argument("--data-root", default=None)
    p.add_argument("--limit-train", type=int, default=None, help="use the first N training images (quick runs)")
    p.add_argument("--limit-test", type=int, default=None)
    p.add_argument("--target", default="host", help='e.g. host, "llvm -mcpu=cortex-a57" (with --device for a board)')
    p.add_argument("--device", default=None, help="local (default) or rpc://HOST:PORT/KEY")
    p.add_argument("--table", default=str(DEFAULT_TABLE), help="latency table (SQLite)")
    p.add_argument("--threads", type=int, default=1, help="threads the target runs with")
    add_build_workers(p)
    p.add_argument("--tune-trials", type=int, default=0, help="also tune convs with meta_schedule (slow)")
    how = p.add_argument_group("how to use the staircases (one of)")
    how.add_argument("--snap", default=None, choices=["up", "down", "nearest"], help="default (without a budget) up: "
                                                                                       "capacity for free")
    how.add_argument("--budget", type=float, help="latency budget as a fraction of the model's predicted latency")
    how.add_argument("--budget-us", type=float, help="latency budget in microseconds")
    p.add_argument("--ways", nargs="+", default=None, metavar="WAY",
                   help="with a budget: the ways to spend it, each student tried (see --trial-images) and the best "
                        "kept: importance (the channels' Fisher importance), params (parameters), a floor under every "
                        "group as params:0.5, uniform (one keep ratio for every group, the simple answer); default: "
                        "importance params:0.5 uniform; one way: no trial")
    p.add_argument("--value", type=names, default=None,
                   help="(instead of --ways) what the budget keeps most of, importance or params; both, comma-separated: "
                        "try each way")
    p.add_argument("--min-keep", default=None,
                   help="(instead of --ways) no group keeps less than this fraction of its channels; several, "
                        "comma-separated: try each way")
    p.add_argument("--no-simple-answer", dest="simple_answer", action="store_false",
                   help="do not distil the uniform student (one keep ratio, the simple answer) at the same latency "
                        "to report HAKD's lead over it (saves one distillation)")
    p.add_argument("--trial-images", type=int, default=TrialConfig.images,
                   help="ways tried: each student is distilled one epoch over this many training images ...")
    p.add_argument("--held-out", type=int, default=TrialConfig.held_out,
                   help="... and the most accurate on this many other training images (the last ones) is kept")
    p.add_argument("--amount", type=float, default=0.5, help="Fisher: fraction of the parameters to keep")
    p.add_argument("--prune-every", type=int, default=100, help="Fisher: fine-tuning steps between removals")
    p.add_argument("--epochs", type=int, default=200, help="distillation epochs")
    p.add_argument("--init", default="inherit", choices=["inherit", "reset"], help="student initialisation")
    p.add_argument("--lr", type=float, default=0.1, help="distillation learning rate")
    p.add_argument("--torch-threads", type=int, default=None, help="torch threads for training")
    add_training_device(p)
    p.add_argument("--out", required=True, help="run folder (every stage resumes from it)")
    p.set_defaults(handler=_optimize)

    p = sub.add_parser("diagnose", help="why is my pruned model slow: each layer's place on its latency staircase",
                       description="Measure every channel group's latency staircase around the model's own widths "
                                   "(and past them, the model widened by zero channels) and say which layers sit just "
                                   "past a step, what snapping down would save and what snapping up gives for free.")
    p.add_argument("--run", help="a `hakd train` run folder")
    p.add_argument("--model", help="PACKAGE.MODULE:FACTORY")
    p.add_argument("--model-file", help="a saved nn.Module, or a model.pt from `hakd prune`/`hakd snap`")
    p.add_argument("--weights", help="with --model: a state dict to load")
    p.add_argument("--num-classes", type=int)
    p.add_argument("--input-shape", help="C,H,W of one input (default: the data set's)")
    p.add_argument("--data", default="fashion-mnist", choices=sorted(INPUTS), help="input format (default fashion-mnist)")
    p.add_argument("--groups", help="comma-separated groups to diagnose (default: every prunable group)")
    p.add_argument("--headroom", type=int, default=16, help="channels measured past each width (default 16)")
    p.add_argument("--plot-dir", help="write a staircase PNG per group here")
    p.add_argument("--unpruned", help="the model before pruning (a `hakd train` run folder or a saved nn.Module): "
                                      "also say what one keep ratio of it, rounded to the target's vector width (the "
                                      "simple answer), would keep at this model's latency")
    p.add_argument("--target", default="host")
    p.add_argument("--device", default=None)
    p.add_argument("--table", default=str(DEFAULT_TABLE))
    p.add_argument("--threads", type=int, default=1)
    add_build_workers(p)
    p.set_defaults(handler=_diagnose)
