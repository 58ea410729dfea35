"""Distillation losses and student initialisation, on the real Fashion-MNIST.

    .venv/bin/python benchmarks/distill.py --epochs 2 --seeds 0 1

A ResNet-20 teacher (`hakd train`, benchmarks/snap.py's runs/bench/resnet20-teacher) and its
Fisher student at half the parameters (runs/bench/resnet20-fisher); the student is trained with
the same recipe and epochs for each loss (cross-entropy only, KD, KD + attention transfer) and
initialisation (inherit: the teacher's kept weights; reset: fresh), for each seed, through the
CLI (`hakd distill`, resumable). Writes results/distill.csv (one row per run) and
results/distill_summary.csv (mean and spread over seeds); columns in benchmarks/README.md.
"""

import argparse
import statistics
from pathlib import Path

from hakd.cli import main as hakd
from common import write_csv  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

RUNS = Path("runs/bench")


def run():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--teacher", default=str(RUNS / "resnet20-teacher"))
    parser.add_argument("--student", default=str(RUNS / "resnet20-fisher"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--losses", nargs="+", default=["ce", "kd", "kd+at"], help="run these (others: reported if run)")
    args = parser.parse_args()
    rows = []
    for seed in args.seeds:
        for init in ("inherit", "reset"):
            for loss in ("ce", "kd", "kd+at"):
                out = RUNS / "distill" / f"{loss}-{init}-s{seed}-e{args.epochs}"
                if loss in args.losses:
                    assert hakd(["distill", "--teacher", args.teacher, "--student", args.student, "--out", str(out),
                                 "--epochs", str(args.epochs), "--loss", loss, "--init", init, "--seed", str(seed),
                                 "--threads", str(args.threads), "--resume"]) == 0
                if not (out / "model.pt").is_file():  # not run (or not finished) in this or an earlier invocation
                    continue
                lines = (out / "metrics.csv").read_text().splitlines()
                header, last = lines[0].split(","), lines[-1].split(",")
                seconds = [float(r.split(",")[header.index("seconds")]) for r in lines[1:]]
                rows.append(dict(loss=loss, init=init, seed=seed, epochs=args.epochs,
                                 test_acc=last[header.index("test_acc")], train_loss=last[header.index("train_loss")],
                                 seconds_per_epoch=f"{statistics.mean(seconds):.1f}", threads=args.threads))
                print(rows[-1], flush=True)
                write_csv("distill.csv", rows)
    summary = []
    for init in ("inherit", "reset"):
        for loss in ("ce", "kd", "kd+at"):
            accs = [float(r["test_acc"]) for r in rows if r["loss"] == loss and r["init"] == init]
            secs = [float(r["seconds_per_epoch"]) for r in rows if r["loss"] == loss and r["init"] == init]
            if not accs:
                continue
            summary.append(dict(loss=loss, init=init, seeds=len(accs), epochs=args.epochs,
                                mean_test_acc=f"{statistics.mean(accs):.4f}", spread=f"{max(accs) - min(accs):.4f}",
                                seconds_per_epoch=f"{statistics.mean(secs):.1f}"))
    write_csv("distill_summary.csv", summary)


if __name__ == "__main__":
    run()
