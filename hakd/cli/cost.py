"""``hakd`` subcommands for graphs and the cost model: groups, profile, staircase, export, table.

    hakd groups resnet20
    hakd profile resnet20 --target host --threads 1
    hakd staircase resnet56 --group layers.9.conv1 --plot stairs.png
    hakd export --run runs/r20 --target host --out deploy/r20
    hakd table list | hakd table export rows.csv | hakd table merge other.sqlite
    (prune, staircases, snap: hakd.cli.prune; optimize, diagnose: hakd.cli.optimize)
"""

from __future__ import annotations

from hakd.cli.inputs import INPUTS, add_build_workers, output_folder, profiler, traced_model
from hakd.errors import ConfigError

__all__ = ["add_cost_commands"]


def _groups(args):
    from hakd.passes.groups import find_groups

    gm, what = traced_model(args)
    groups = find_groups(gm)
    print(f"{what}: {len(groups)} channel groups, {len(groups.prunable())} prunable")
    if groups.gathers:
        print(f"  {len(groups.gathers)} channel moves (shuffles, splits) are replayed as gathers when pruned")
    for g in groups:
        status = "prunable" if g.prunable else f"kept: {g.reason[:100]}"
        if g.prunable and g.slices > 1:
            status += f" in {g.slices} slices (a grouped conv's: {g.width // g.slices} channels each, pruned evenly)"
        print(f"  {g.name:32s} {g.width:5d}  {len(g.members):3d} members  {status}")


def _profile(args):
    gm, what = traced_model(args)
    prof = profiler(args, args.threads)
    timing = prof.model(gm)
    print(f"{what} on {prof.target.key()} at {prof.device}, {args.threads} thread(s); table {prof.table.path}")
    for k in sorted(timing.kernels, key=lambda k: -k.latency_s * k.calls):
        print(f"  {k.kernel[:44]:44s} x{k.calls:<3d} {k.latency_s * 1e6:9.1f} us  {k.schedule}")
    print(f"predicted latency: {timing.latency_s * 1e6:.1f} us ({prof.compiles} kernels compiled, {prof.table_hits} from the table)")


def _staircase(args):
    from hakd.sweep import group_staircase
    from hakd.passes.groups import find_groups

    gm, what = traced_model(args)
    groups = find_groups(gm)
    if args.group not in groups.by_name:
        raise ConfigError(f"no group {args.group!r}; prunable groups: {', '.join(g.name for g in groups.prunable())}")
    prof = profiler(args, args.threads)
    sweep = group_staircase(prof, gm, groups, args.group, adaptive=not args.full, tol=args.tol)
    print(f"{what}: group {args.group} on {prof.target.key()}: {sweep.evaluations} widths measured, {prof.compiles} compiles")
    curve, optimal = sweep.curve, set(sweep.optimal)
    for w in sorted(curve):
        how = "measured" if w in sweep.latency else "on a ramp"
        print(f"  {w:5d} {curve[w] * 1e6:10.1f} us  {how}{'  <- optimal' if w in optimal else ''}")
    if args.plot:
        from hakd.report import measured_on, plot_staircase

        m = prof.measure
        caption = measured_on(prof.target_key, m.threads, prof.context(prof.lower(gm)), f"{m.number} x {m.repeat}")
        plot_staircase(curve, sweep.latency, sweep.optimal, args.plot, args.group, caption)
        print(f"plot: {args.plot}")


def _export(args):
    from pathlib import Path

    from hakd.export import META, export

    if (Path(args.out) / META).exists() and not args.overwrite:
        raise ConfigError(f"{args.out} already holds an export ({META}); choose another --out, or pass --overwrite")
    output_folder(args.out, {META, "model.so", "model.tar", "model.onnx"}, "hakd export", overwrite=args.overwrite)

    gm, what = traced_model(args)
    result = export(gm, args.out, profiler(args, args.threads))
    print(f"exported {what} to {result.library}: predicted {result.predicted_latency_s * 1e6:.1f} us"
          + (f", max |hakd - PyTorch| = {result.max_abs_error:.2e}" if result.max_abs_error is not None else ""))


def _table(args):
    from hakd.cost.table import LatencyTable

    table = LatencyTable(args.table, readonly=args.action in ("list", "export"))
    if args.action == "list":
        print(f"{table.path}: {len(table)} measurements")
        for key, s in table.summary().items():
            print(f"  {key}: {s['kernels']} kernels, {s['rows']} rows, {s['failed']} failed")
    elif args.action == "export":
        print(f"wrote {table.export_csv(args.path)} rows to {args.path}")
    else:
        added, kept = table.merge(args.path)
        print(f"merged {args.path}: {added} rows added, {kept} already present")


def add_cost_commands(sub) -> None:
    from hakd.cost.table import DEFAULT_TABLE

    def model_args(p, cost=True):
        p.add_argument("model", nargs="?", help="zoo model name (or use --run)")
        p.add_argument("--run", help="a `hakd train` run folder: its trained model")
        p.add_argument("--model-file", help="a pruned model written by `hakd prune` (OUT/model.pt)")
        p.add_argument("--data", default="fashion-mnist", choices=sorted(INPUTS), help="input format for a zoo model")
        if cost:
            p.add_argument("--target", dest="hw_target", default="host", help='hardware target, e.g. host, "llvm -mcpu=cortex-a57"')
            p.add_argument("--device", default=None, help="local (default) or rpc://HOST:PORT/KEY")
            p.add_argument("--table", default=str(DEFAULT_TABLE), help="latency table (SQLite)")
            p.add_argument("--threads", type=int, default=1, help="threads the target runs with (default 1)")
            add_build_workers(p)

    p = sub.add_parser("groups", help="list a model's channel groups")
    model_args(p, cost=False)
    p.set_defaults(handler=_groups)
    tune_help = "also tune every convolution with meta_schedule, N trials each (minutes per kernel; for final models)"
    p = sub.add_parser("profile", help="measure every fused kernel of a model on a target")
    model_args(p)
    p.add_argument("--tune-trials", type=int, default=0, metavar="N", help=tune_help)
    p.set_defaults(handler=_profile)
    p = sub.add_parser("staircase", help="latency of one channel group's kernels for each width")
    model_args(p)
    p.add_argument("--group", required=True)
    p.add_argument("--full", action="store_true", help="measure every width (default: adaptive sweep)")
    p.add_argument("--tol", type=float, default=None, help="noise tolerance (default 0.04)")
    p.add_argument("--plot", help="write a PNG of the staircase")
    p.set_defaults(handler=_staircase)
    p = sub.add_parser("export", help="compile a model with its measured schedules")
    model_args(p)
    p.add_argument("--out", required=True)
    p.add_argument("--overwrite", action="store_true", help="replace the export --out holds")
    p.add_argument("--tune-trials", type=int, default=0, metavar="N", help=tune_help)
    p.set_defaults(handler=_export)
    p = sub.add_parser("table", help="list, export or merge latency tables")
    p.add_argument("action", choices=["list", "export", "merge"])
    p.add_argument("path", nargs="?", help="CSV to write (export) or table to merge in (merge)")
    p.add_argument("--table", default=str(DEFAULT_TABLE))
    p.set_defaults(handler=_table)
