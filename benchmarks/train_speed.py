"""Training speed on the CPU: images per second of hakd's training loop, and against another revision.

Trains a zoo model for one epoch over the first N real Fashion-MNIST images with `hakd.train.fit`
(the loop every training stage shares), in a fresh process per timing. With `--against REV`, the same
timing runs in a checkout of REV (a git worktree under runs/bench/) in interleaved rounds, so a change
to the loop is measured side by side on a shared machine, as a ratio.

    python benchmarks/train_speed.py --model resnet20 --images 4096 --rounds 3 --against HEAD~1
    python benchmarks/train_speed.py --precision fp32 bf16

Writes results/train_speed.csv (columns in benchmarks/README.md).
"""

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.backends import isa  # noqa: E402
from benchmarks.common import write_csv  # noqa: E402

TIMING = """
import json, sys, tempfile, time, torch
from hakd import data, models
from hakd.config import DataConfig, TrainConfig
from hakd.train import fit
name, images, threads, precision = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
train, test = data.load(DataConfig("fashion-mnist", limit_train=images, limit_test=256))
torch.manual_seed(0)
model = models.create(name, in_channels=1)
extra = {} if precision == "fp32" else {"precision": precision}  # revisions before the option train in fp32
config = TrainConfig(epochs=1, batch_size=128, lr=0.05, threads=threads, **extra)
with tempfile.TemporaryDirectory() as out:
    start = time.perf_counter()
    fit(model, train, test, config, out, progress=False)
    print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def _time(tree: Path, model: str, images: int, threads: int, precision: str) -> float:
    """Images per second of one epoch (a fresh process in ``tree``)."""
    done = subprocess.run([sys.executable, "-c", TIMING, model, str(images), str(threads), precision], cwd=tree,
                          env={**os.environ, "PYTHONPATH": str(tree)}, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"timing in {tree} failed:\n{done.stderr[-2000:]}")
    return images / json.loads(done.stdout.strip().splitlines()[-1])["seconds"]


def _checkout(rev: str) -> Path:
    sha = subprocess.run(["git", "rev-parse", "--short", rev], cwd=REPO, capture_output=True, text=True, check=True).stdout.strip()
    tree = REPO / "runs" / "bench" / f"tree-{sha}"
    if not tree.is_dir():
        subprocess.run(["git", "worktree", "add", "--detach", str(tree), sha], cwd=REPO, check=True, capture_output=True)
    return tree


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="resnet20")
    ap.add_argument("--images", type=int, default=4096)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--precision", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--against", default=None, metavar="REV", help="also time this revision, interleaved (fp32 only)")
    args = ap.parse_args()
    print(f"host {platform.machine()}, vector ISA {isa()}, {args.threads} training thread(s)", flush=True)
    runs = [("this tree", REPO, p) for p in args.precision]
    if args.against:
        runs.append((args.against, _checkout(args.against), "fp32"))
    speeds = {(label, p): [] for label, _, p in runs}
    for r in range(args.rounds):
        for label, tree, precision in runs:
            speeds[(label, precision)].append(_time(tree, args.model, args.images, args.threads, precision))
            print(f"round {r + 1}: {label} {precision}: {speeds[(label, precision)][-1]:.0f} images/s", flush=True)
    base = speeds[("this tree", args.precision[0])]
    rows = [dict(model=args.model, isa=isa(), threads=args.threads, images=args.images, code=label, precision=p,
                 images_per_s=f"{statistics.median(v):.1f}", min_images_per_s=f"{min(v):.1f}",
                 ratio_to_this_tree=f"{statistics.median(b / a for a, b in zip(base, v)):.3f}", rounds=len(v))
            for (label, p), v in speeds.items()]
    for row in rows:
        print(row, flush=True)
    write_csv("train_speed.csv", rows)


if __name__ == "__main__":
    main()
