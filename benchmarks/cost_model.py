"""Cost-model benchmarks: prediction vs measurement, hakd vs PyTorch, staircases, sweep cost.

    .venv/bin/python benchmarks/cost_model.py [--quick]

Writes, under benchmarks/results/ (columns explained in benchmarks/README.md):
  e2e.csv           predicted vs measured latency of the exported model, and PyTorch eager
  staircases.csv    full vs adaptive sweeps of several channel groups (compiles, optimal points)
  staircase_*.png   latency-vs-width plots with the optimal points marked
  profile_time.csv  cold and warm profile time of a whole ResNet-56
  sweep_reuse.csv   adaptive sweeps of 8 equal groups sharing a table, against full sweeps
  tuning.csv        meta_schedule (optional tuning) against hakd's templates, a few kernels
Everything runs with one thread (TVM and PyTorch), batch 1, 3x32x32 input, on this host.
"""

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
import timeit
from pathlib import Path

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hakd import models  # noqa: E402
from hakd.cost.profile import Profiler  # noqa: E402
from hakd.sweep import group_staircase  # noqa: E402
from hakd.cost.staircase import grid_points  # noqa: E402
from hakd.cost.schedules import candidates  # noqa: E402
from hakd.cost.table import LatencyTable  # noqa: E402
from hakd.export import export, load  # noqa: E402
from hakd.passes.groups import find_groups  # noqa: E402
from hakd.passes.trace import trace  # noqa: E402
from hakd.report import measured_on, plot_sweeps  # noqa: E402
from common import RESULTS, calibrated, cpu, isa, merge_rows, write_csv  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

SHAPE = (1, 3, 32, 32)


def torch_eager_s(model, repeat=20):
    x = torch.randn(*SHAPE)
    with torch.no_grad():
        for _ in range(5):
            model(x)
        runs = [timeit.timeit(lambda: model(x), number=10) / 10 for _ in range(repeat)]
    return statistics.median(runs)


def retimed_prediction_s(gm, prof):
    """The prediction again, from the deployed schedules built and timed afresh (a new table)
    right after the model's measurement: the same cost model, taken in the same spell of the
    machine's load as the measurement, which the profile before export was not."""
    low = prof.lower(gm)
    deployed = {k.call_modules: {k.schedule} for k in prof.lowered(low).kernels}  # table hits: nothing timed
    with tempfile.TemporaryDirectory() as d:
        return Profiler("host", table=LatencyTable(Path(d) / "t.sqlite")).lowered(low, only=deployed).latency_s


def e2e(names, folder, rounds=3):
    """Per model and round: profile with a fresh table (the prediction), then time the exported
    model; rounds interleave the two so that a noisy spell of the machine hits both."""
    rows = []
    for name in names:
        model = calibrated(name, SHAPE)
        gm = trace(model, torch.zeros(SHAPE))
        predicted, measured, noise, adjacent = [], [], [], []
        for r in range(rounds):
            with tempfile.TemporaryDirectory() as d:
                prof = Profiler("host", table=LatencyTable(Path(d) / "t.sqlite"))
                t0 = time.time()
                result = export(gm, Path(folder) / name, prof)
                export_s = time.time() - t0
                times = load(Path(folder) / name).time(number=20, repeat=15, min_repeat_ms=100)
                adjacent.append(retimed_prediction_s(gm, prof))
            predicted.append(result.predicted_latency_s)
            measured.append(float(np.median(times)))
            noise.append(float((times.max() - times.min()) / np.median(times)))
        ratios = [p / m for p, m in zip(predicted, measured)]
        pred, med = float(np.median(predicted)), float(np.median(measured))
        eager = torch_eager_s(model)
        meta = json.loads((Path(folder) / name / "hakd-export.json").read_text())
        rows.append(dict(model=name, cpu=cpu(), isa=isa(), rounds=rounds, predicted_us=f"{pred * 1e6:.1f}", measured_us=f"{med * 1e6:.1f}",
                         predicted_over_measured=f"{pred / med:.3f}",
                         ratio_per_round=" ".join(f"{x:.3f}" for x in ratios),
                         fastest_over_fastest=f"{min(predicted) / min(measured):.3f}",
                         adjacent_over_measured=f"{float(np.median(adjacent)) / med:.3f}",
                         adjacent_per_round=" ".join(f"{a / m:.3f}" for a, m in zip(adjacent, measured)),
                         measured_noise=f"{float(np.median(noise)):.3f}", cache_context=meta["cache_context"],
                         call_overhead_us=f"{meta['call_overhead_s'] * 1e6:.2f}", kernel_calls=sum(k["calls"] for k in meta["kernels"]),
                         pytorch_eager_us=f"{eager * 1e6:.1f}", pytorch_over_hakd=f"{eager / med:.2f}",
                         max_abs_error=f"{result.max_abs_error:.2e}", export_s=f"{export_s:.1f}", compiles=prof.compiles))
        print(rows[-1], flush=True)
    write_csv("e2e.csv", merge_rows("e2e.csv", rows, ("model", "cpu", "isa")))


def staircases(cases, quick):
    rows = []
    for model_name, group in cases:
        gm = trace(models.create(model_name).eval(), torch.zeros(SHAPE))
        groups = find_groups(gm)
        sweeps = {}
        for mode in ("full", "adaptive", "full_again"):  # full_again: the same full sweep, on a fresh table
            with tempfile.TemporaryDirectory() as d:
                prof = Profiler("host", table=LatencyTable(Path(d) / "t.sqlite"))
                prof.model(gm)  # the unpruned model, profiled first in the pipeline anyway: not the sweep's work
                model_compiles, t0 = prof.compiles, time.time()
                sweep = group_staircase(prof, gm, groups, group, adaptive=mode == "adaptive")
                sweeps[mode] = (sweep, prof.compiles - model_compiles, time.time() - t0)
        (full, full_compiles, full_s), (ad, ad_compiles, ad_s) = sweeps["full"], sweeps["adaptive"]
        found = lambda sweep: [p for p in full.optimal if any(abs(p - q) <= 1 for q in sweep.optimal)]  # noqa: E731
        near, again = found(ad), found(sweeps["full_again"][0])
        grid = grid_points(groups[group].width)
        transfer = [ad.latency[w] / full.latency[w] for w in ad.latency if w not in grid]
        control = [ad.latency[w] / full.latency[w] for w in grid]  # every candidate in both modes: drift between the runs
        rows.append(dict(model=model_name, group=group, width=groups[group].width, model_compiles=model_compiles,
                         full_evaluations=full.evaluations, full_compiles=full_compiles, full_s=f"{full_s:.0f}",
                         adaptive_evaluations=ad.evaluations, adaptive_remeasured=len(ad.remeasured),
                         adaptive_compiles=ad_compiles, adaptive_s=f"{ad_s:.0f}",
                         compile_ratio=f"{ad_compiles / max(full_compiles, 1):.3f}",
                         full_optimal=" ".join(map(str, full.optimal)), adaptive_optimal=" ".join(map(str, ad.optimal)),
                         full_optimal_found=f"{len(near)}/{len(full.optimal)}",
                         full_again_found=f"{len(again)}/{len(full.optimal)}",
                         transferred_over_full=f"{np.median(transfer):.3f} {max(transfer):.3f}" if transfer else "",
                         grid_over_full=f"{np.median(control):.3f} {max(control):.3f}"))
        print(rows[-1], flush=True)
        plot_sweeps(full, ad, RESULTS / f"staircase_{model_name}_{group.replace('.', '_')}.png", f"{model_name} {group}",
                    measured_on(prof.target_key, prof.measure.threads, "the whole model's", f"{prof.measure.number} x "
                                f"{prof.measure.repeat}") + f", {platform.machine()}")
    write_csv("staircases.csv", rows)


def reuse(model_name="resnet56", groups_names=tuple(f"layers.{i}.conv1" for i in range(10, 18))):
    """Adaptive sweeps of several identical groups sharing one table, against independent full sweeps."""
    gm = trace(models.create(model_name).eval(), torch.zeros(SHAPE))
    groups = find_groups(gm)
    with tempfile.TemporaryDirectory() as d:
        full_prof = Profiler("host", table=LatencyTable(Path(d) / "full.sqlite"))
        t0 = time.time()
        group_staircase(full_prof, gm, groups, groups_names[0], adaptive=False)
        full_one, full_s = full_prof.compiles, time.time() - t0
        prof = Profiler("host", table=LatencyTable(Path(d) / "shared.sqlite"))
        t0 = time.time()
        found = [group_staircase(prof, gm, groups, g).optimal for g in groups_names]
        shared_s = time.time() - t0
    write_csv("sweep_reuse.csv", [dict(
        model=model_name, groups=f"{groups_names[0]}..{groups_names[-1]} ({len(groups_names)} groups of equal shape)",
        full_compiles_one_group=full_one, full_compiles_all_groups=full_one * len(groups_names), full_s_one_group=f"{full_s:.0f}",
        adaptive_shared_table_compiles=prof.compiles, adaptive_shared_table_s=f"{shared_s:.0f}",
        compile_ratio=f"{prof.compiles / (full_one * len(groups_names)):.3f}",
        optimal_points_per_group=" | ".join(" ".join(map(str, f)) for f in found))])


def profile_time(name="resnet56"):
    gm = trace(models.create(name).eval(), torch.zeros(SHAPE))
    with tempfile.TemporaryDirectory() as d:
        table = LatencyTable(Path(d) / "t.sqlite")
        prof = Profiler("host", table=table)
        t0 = time.time()
        prof.model(gm)
        cold_s = time.time() - t0
        compiles = prof.compiles
        prof2 = Profiler("host", table=table)
        t0 = time.time()
        warm = prof2.model(gm)
        warm_s = time.time() - t0
    write_csv("profile_time.csv", [dict(model=name, cold_s=f"{cold_s:.1f}", cold_compiles=compiles, warm_s=f"{warm_s:.2f}",
                                        warm_compiles=prof2.compiles, warm_table_hits=prof2.table_hits,
                                        predicted_us=f"{warm.latency_s * 1e6:.1f}", kernels=len(warm.kernels))])


def tune(name="resnet20", trials=32):
    """meta_schedule against hakd's templates on the distinct 3x3 convolutions of one model."""
    gm = trace(calibrated(name, SHAPE), torch.zeros(SHAPE))
    rows = []
    with tempfile.TemporaryDirectory() as d:
        prof = Profiler("host", table=LatencyTable(Path(d) / "t.sqlite"), tune_trials=trials)
        low = prof.lower(gm)
        context = prof.context(low)
        convs = [k for k in low.kernels.values() if k.kind == "conv2d" and k.shapes[1][2:] == (3, 3)]
        for k in sorted(convs, key=lambda k: k.shapes[0][1] * k.shapes[-1][1])[::3]:
            templates = [(cfg.key(), prof.time_config(k, cfg, context)) for cfg in candidates(k.func)]
            best_key, best = min(((key, m) for key, m in templates if m.ok), key=lambda x: x[1].latency_s)
            t0 = time.time()
            cfg = prof.tuner.candidate(k.func)
            tuning_s = time.time() - t0
            tuned = prof.time_config(k, cfg, context)
            rows.append(dict(model=name, kernel=k.name, shapes=k.signature.split("|")[1], calls=k.calls, context=context,
                             template_best_us=f"{best.latency_us:.1f}", template_schedule=best_key,
                             tuned_us=f"{tuned.latency_us:.1f}", tuned_over_template=f"{tuned.latency_s / best.latency_s:.2f}",
                             trials=trials, tuning_s=f"{tuning_s:.0f}"))
            print(rows[-1], flush=True)
    write_csv("tuning.csv", rows)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="one model, one small staircase (a smoke run)")
    ap.add_argument("--only", choices=["e2e", "staircases", "reuse", "profile", "tune"], default=None)
    ap.add_argument("--models", nargs="+", default=["resnet20", "resnet56", "mobilenet_v2", "densenet40"], help="e2e models")
    ap.add_argument("--rounds", type=int, default=3, help="e2e: profiles and measurements per model")
    args = ap.parse_args()
    torch.set_num_threads(1)
    print(f"python {sys.version.split()[0]}, torch {torch.__version__}, {platform.processor() or platform.machine()}", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        if args.only in (None, "profile"):
            profile_time()
        if args.only in (None, "e2e"):
            e2e(["resnet20"] if args.quick else args.models, folder, rounds=1 if args.quick else args.rounds)
        if args.only in (None, "staircases"):
            cases = [("resnet56", "layers.0.conv1")] if args.quick else [
                ("resnet56", "layers.0.conv1"), ("resnet56", "layers.9.conv1"), ("resnet56", "layers.18.conv1"),
                ("mobilenet_v2", "features.2.conv.0.0")]
            staircases(cases, args.quick)
        if args.only in (None, "reuse") and not args.quick:
            reuse()
        if args.only in (None, "tune") and not args.quick:
            tune()


if __name__ == "__main__":
    main()
