"""Time hakd's graph passes (trace, channel groups, rebuild) on zoo models.

    .venv/bin/python benchmarks/graph_passes.py [--models resnet56 densenet100] [--repeat 5]

Writes benchmarks/results/graph_passes.csv (columns explained in benchmarks/README.md).
"""

import argparse
import platform
import statistics
import time

import numpy as np
import torch

from hakd import models
from hakd.passes.groups import find_groups
from hakd.passes.rebuild import rebuild
from hakd.passes.trace import trace
from common import write_csv  # noqa: E402  (benchmarks/ is on sys.path when run as a script)


def half_plan(groups):
    rng = np.random.default_rng(0)
    keep = {g.name: tuple(sorted(rng.choice(g.width, max(1, g.width // 2), replace=False).tolist())) for g in groups.prunable()}
    return groups.plan(keep=keep)


def time_once(name, shape):
    model = models.create(name, in_channels=shape[1])
    x = torch.zeros(shape)
    t0 = time.perf_counter()
    gm = trace(model, x)
    t1 = time.perf_counter()
    groups = find_groups(gm)
    t2 = time.perf_counter()
    plan = half_plan(groups)
    small = rebuild(gm, groups, plan)
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2, len(list(gm.graph.nodes)), len(groups), len(groups.prunable()), \
        sum(p.numel() for p in model.parameters()), sum(p.numel() for p in small.parameters())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="+", default=["resnet20", "resnet56", "mobilenet_v2", "densenet40", "densenet100"])
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    rows = []
    for name in args.models:
        shape = (1, 3, 32, 32)
        runs = [time_once(name, shape) for _ in range(args.repeat)]
        med = [statistics.median(r[i] for r in runs) for i in range(3)]
        nodes, ngroups, nprunable, p0, p1 = runs[0][3:]
        rows.append(dict(model=name, input="1x3x32x32", nodes=nodes, groups=ngroups, prunable_groups=nprunable,
                         trace_s=f"{med[0]:.4f}", groups_s=f"{med[1]:.4f}", rebuild_s=f"{med[2]:.4f}",
                         total_s=f"{sum(med):.4f}", params=p0, params_after_half_plan=p1, repeats=args.repeat,
                         threads=args.threads, cpu=platform.processor() or platform.machine()))
        print(rows[-1])
    write_csv("graph_passes.csv", rows)


if __name__ == "__main__":
    main()
