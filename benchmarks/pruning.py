"""Pruning benchmarks on the real Fashion-MNIST: Fisher vs L1 vs uniform width, and Deep Compression.

    .venv/bin/python benchmarks/pruning.py [--teacher-epochs 3] [--prune-every 20] [--finetune-epochs 1]

Trains (or resumes) a ResNet-20 teacher, prunes it to about half its parameters with each
method, fine-tunes each pruned model for the same number of epochs, and measures test
accuracy on the 10,000 real test images, parameters, MACs and the latency hakd's cost
model predicts on this host (TVM, hakd schedules, 1 thread, batch 1). Deep Compression
prunes to 90% sparsity. Writes benchmarks/results/pruning.csv (columns in the README).
"""

import argparse
import copy
import time
from pathlib import Path

import torch

from hakd import models
from hakd.baselines import deep_compression as dc
from hakd.baselines.widths import fit_fraction, l1_plan, uniform_plan
from hakd.config import DataConfig, PruneConfig, TrainConfig
from hakd.cost.profile import Profiler
from hakd.cost.table import LatencyTable
from hakd.data import load
from hakd.passes.counts import count
from hakd.passes.fisher import fisher_prune
from hakd.passes.groups import find_groups
from hakd.passes.rebuild import rebuild
from hakd.passes.trace import trace
from hakd.train import evaluate, fit, load_trained
from common import write_csv  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

RUNS = Path(__file__).parent / "out"


def timed(name, step):
    """Run ``step()``; its wall-clock seconds are kept in RUNS/NAME.seconds, so a resumed rerun reports
    the first complete run's time, not the time to reload finished results."""
    record = RUNS / f"{name}.seconds"
    t0 = time.time()
    result = step()
    if not record.exists():
        RUNS.mkdir(exist_ok=True)
        record.write_text(f"{time.time() - t0:.1f}\n")
    return result, float(record.read_text())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--teacher-epochs", type=int, default=3)
    ap.add_argument("--prune-every", type=int, default=20)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--dc-steps", type=int, default=150, help="fine-tuning steps per Deep Compression sparsity stage")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    train, test = load(DataConfig("fashion-mnist"))
    shape = (1, 1, 28, 28)
    teacher_dir = RUNS / f"teacher-resnet20-e{args.teacher_epochs}"
    torch.manual_seed(0)
    net = models.create("resnet20", in_channels=1)
    fit(net, train, test, TrainConfig(epochs=args.teacher_epochs, threads=args.threads), teacher_dir, resume=True,
        run_info={"model": "resnet20", "in_channels": 1, "num_classes": 10, "data": DataConfig().to_dict()})
    teacher = load_trained(teacher_dir)
    teacher_s = sum(float(line.split(",")[6]) for line in (teacher_dir / "metrics.csv").read_text().splitlines()[1:])
    gm = trace(teacher, torch.zeros(shape))
    groups = find_groups(gm)
    profiler = Profiler("host", table=LatencyTable(RUNS / "latency.sqlite"))
    finetune = TrainConfig(epochs=args.finetune_epochs, lr=0.01, lr_milestones=(0.5,), threads=args.threads)
    rows = []

    def report(method, model, acc_before_ft, seconds, note=""):
        params, macs = count(model, shape)
        _, acc = evaluate(model, test)
        latency = profiler.model(trace(model.eval(), torch.zeros(shape))).latency_s
        rows.append(dict(method=method, params=params, macs=macs, test_acc_before_finetune=f"{acc_before_ft:.4f}",
                         test_acc=f"{acc:.4f}", predicted_latency_us=f"{latency * 1e6:.0f}", seconds=f"{seconds:.0f}", note=note))
        print(rows[-1], flush=True)

    _, teacher_acc = evaluate(teacher, test)
    report("teacher (unpruned)", teacher, teacher_acc, teacher_s, f"{args.teacher_epochs} epochs SGD lr 0.1")

    def fisher():
        result = fisher_prune(gm, groups, train, PruneConfig(target="params", amount=0.5, prune_every=args.prune_every,
                                                              threads=args.threads), RUNS / "fisher", resume=True)
        pruned = rebuild(result.model, groups, result.plan)
        acc0 = evaluate(pruned, test)[1]
        fit(pruned, train, test, finetune, RUNS / "fisher-finetune", resume=True)
        return result, pruned, acc0

    (result, pruned, acc0), seconds = timed("fisher", fisher)
    report("fisher", pruned, acc0, seconds,
           f"{len(result.history)} channels removed, one every {args.prune_every} steps (lr 8e-4); then {args.finetune_epochs} epoch(s) lr 0.01")

    for method, make in (("l1", lambda f: l1_plan(gm, groups, f)), ("uniform", lambda f: uniform_plan(groups, f))):
        def baseline():
            plan = fit_fraction(make, gm, groups, 0.5, shape)
            pruned = rebuild(gm, groups, plan)
            acc0 = evaluate(pruned, test)[1]
            fit(pruned, train, test, finetune, RUNS / f"{method}-finetune", resume=True)
            return plan, pruned, acc0

        (plan, pruned, acc0), seconds = timed(method, baseline)
        report(method, pruned, acc0, seconds, f"{plan.note}; then {args.finetune_epochs} epoch(s) lr 0.01")

    dense = copy.deepcopy(teacher)
    _, seconds = timed("deep-compression", lambda: dc.prune_and_finetune(dense, train, (0.5, 0.75, 0.9), steps_per_stage=args.dc_steps))
    _, acc0 = evaluate(dense, test)
    dc.share_in_place(dense)
    packed = dc.compress(dense)
    fp32 = 4 * sum(p.numel() for p in dense.parameters()) + sum(4 * b.numel() for n, b in dense.named_buffers() if "running" in n)
    sparsity = sum((m.weight == 0).sum().item() for m in dense.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))) / \
        sum(m.weight.numel() for m in dense.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear)))
    report("deep compression", dense, acc0, seconds,
           f"sparsity {sparsity:.3f}, {packed.size_bytes} bytes compressed vs {fp32} fp32 "
           f"(ratio {fp32 / packed.size_bytes:.1f}x); 8-bit conv / 5-bit fc sharing; {args.dc_steps} steps per stage; "
           "dense kernels: latency unchanged")
    write_csv("pruning.csv", rows)


if __name__ == "__main__":
    main()
