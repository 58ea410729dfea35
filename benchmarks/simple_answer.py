"""Is HAKD's kept student never worse than the simple answer? `hakd optimize` as a user runs it.

For each model: a teacher trained briefly on the real Fashion-MNIST (`hakd train`), then `hakd optimize`
with a latency budget and its default ways (importance, params:0.5, uniform: one keep ratio for
every group, widths rounded to the target's vector width), which distils the uniform student beside
the kept one. One row per model from the run's report.json: the kept student's measured latency
against the budget, and its held-out and test accuracy against the uniform student's, each lead
with its standard error. Runs resume from runs/bench/simple/MODEL/ (a finished one only reports).

    python benchmarks/simple_answer.py --models resnet20 mobilenet_v2 --budget 0.6

Writes results/simple_answer.csv (columns in benchmarks/README.md).
"""

import argparse
import json
import math
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.backends import isa  # noqa: E402
from benchmarks.common import merge_rows, write_csv  # noqa: E402
from hakd.cli import main as hakd  # noqa: E402


def run(model: str, args) -> dict:
    folder = Path("runs/bench/simple") / model
    limits = ["--limit-train", str(args.limit_train), "--limit-test", str(args.limit_test)]
    t = time.time()
    if hakd(["train", model, "--data", "fashion-mnist", "--epochs", str(args.teacher_epochs), "--threads", "2",
             *limits, "--out", str(folder / "teacher"), "--resume"]) != 0:
        raise SystemExit(f"{model}: teacher training failed")
    teacher_s = time.time() - t
    t = time.time()
    if hakd(["optimize", "--run", str(folder / "teacher"), "--target", "host", "--table", str(folder / "latency.sqlite"),
             "--amount", str(args.keep), "--prune-every", str(args.prune_every), "--budget", str(args.budget),
             "--epochs", str(args.epochs), "--lr", "0.01", "--torch-threads", "2", *limits,
             "--trial-images", str(args.trial_images), "--held-out", str(args.held_out), "--out", str(folder / "hakd")]) != 0:
        raise SystemExit(f"{model}: hakd optimize failed")
    report = json.loads((folder / "hakd" / "report" / "report.json").read_text())
    models, simple, fit = report["models"], report["simple_answer"], report["decision"]["fit"]
    kept, budget_s = models["HAKD student"], report["budget_s"]
    trials = {t["way"]: t for t in fit["trials"]}
    n = report["decision"]["trial"]["held_out"]
    row = dict(model=model, isa=isa(), budget=args.budget, budget_us=f"{budget_s * 1e6:.1f}", kept_way=fit["way"],
               kept_params=kept["params"], kept_predicted_us=f"{kept['predicted_s'] * 1e6:.1f}",
               kept_measured_us=f"{kept['measured_s'] * 1e6:.1f}", kept_measured_over_budget=f"{kept['measured_s'] / budget_s:.3f}",
               kept_held_out=trials[fit["way"]]["held_out_accuracy"], held_out_images=n)
    if simple.get("kept"):
        row.update(uniform_params="(kept)", uniform_measured_us=row["kept_measured_us"], uniform_held_out=row["kept_held_out"],
                   held_out_lead="0.0000", held_out_lead_se="0.0000", test_lead="0.0000", test_lead_se="0.0000",
                   measured_ratio="1.000", goal_met=True)
    else:
        uniform = models["uniform student"]
        a, b = row["kept_held_out"], trials["uniform"]["held_out_accuracy"]
        se = math.sqrt((a * (1 - a) + b * (1 - b)) / n)  # two accuracies on the same n images, taken as independent
        row.update(uniform_params=uniform["params"], uniform_measured_us=f"{uniform['measured_s'] * 1e6:.1f}",
                   uniform_held_out=b, held_out_lead=f"{a - b:.4f}", held_out_lead_se=f"{se:.4f}",
                   test_lead=f"{simple['test_lead']:.4f}", test_lead_se=f"{simple['test_lead_se']:.4f}",
                   measured_ratio=f"{simple.get('measured_ratio', float('nan')):.3f}", goal_met=a >= b - se)
    row.update(kept_onnxruntime_us=f"{(kept.get('onnxruntime_s') or float('nan')) * 1e6:.1f}",
               trial_images=fit.get("trial_images"), trial_seconds=f"{fit.get('trial_seconds', float('nan')):.0f}",
               teacher_seconds=f"{teacher_s:.0f}", optimize_seconds=f"{time.time() - t:.0f}",
               stage_seconds=json.dumps({k: round(v) for k, v in report.get("stage_seconds", {}).items()}))
    return row


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["resnet20", "mobilenet_v2"])
    ap.add_argument("--budget", type=float, default=0.6, help="fraction of the teacher's predicted latency")
    ap.add_argument("--keep", type=float, default=0.6, help="Fisher: fraction of the parameters kept")
    ap.add_argument("--prune-every", type=int, default=2)
    ap.add_argument("--teacher-epochs", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=1, help="distillation epochs of the kept and the uniform student")
    ap.add_argument("--limit-train", type=int, default=20000)
    ap.add_argument("--limit-test", type=int, default=10000)
    ap.add_argument("--trial-images", type=int, default=10000)
    ap.add_argument("--held-out", type=int, default=5000)
    args = ap.parse_args()
    print(f"host {platform.machine()}, vector ISA {isa()}", flush=True)
    rows = [run(m, args) for m in args.models]
    for r in rows:
        print(r, flush=True)
    merged = merge_rows("simple_answer.csv", rows)
    columns = list(dict.fromkeys(k for r in rows + merged for k in r))  # rows written before a column existed: blank
    write_csv("simple_answer.csv", [{k: r.get(k, "") for k in columns} for r in merged])


if __name__ == "__main__":
    main()
