"""Torch-Pruning (the `torch-pruning` package, 1.6) as a user would run it, and its students as hakd plans.

Torch-Pruning prunes an nn.Module in place, every layer by one ratio. To compare its student
with hakd's on the same footing (same rebuild, same kernels, same importance), its decision is
read back as a hakd PrunePlan: a pruned BatchNorm keeps its surviving channels' running
statistics unchanged, so each kept channel is found by its running mean in the teacher's.
"""

import copy

import numpy as np
import torch
from torch import nn

from hakd.passes.counts import count
from hakd.plan import PrunePlan


IMPORTANCE = ("group_norm", "magnitude")


def torch_pruning_student(teacher: nn.Module, shape, ratio: float, round_to=None, importance: str = "group_norm") -> nn.Module:
    """A copy of ``teacher`` pruned by Torch-Pruning at one ``ratio`` for every layer (classifier kept).
    ``group_norm``: Torch-Pruning's default, the L2 norm over every layer of a dependency group
    (DepGraph); ``magnitude``: the L1 norm of the pruned layer's own filters (Li et al.)."""
    import torch_pruning as tp

    model = copy.deepcopy(teacher).eval()
    if importance not in IMPORTANCE:
        raise ValueError(f"importance is one of {IMPORTANCE}, got {importance!r}")
    imp = (tp.importance.GroupMagnitudeImportance(p=2, group_reduction="mean") if importance == "group_norm"
           else tp.importance.GroupMagnitudeImportance(p=1, group_reduction="first"))
    last = [m for m in model.modules() if isinstance(m, nn.Linear)][-1:]
    pruner = tp.pruner.MetaPruner(model, torch.zeros(shape), importance=imp, pruning_ratio=ratio, ignored_layers=last,
                                  round_to=round_to)
    pruner.step()
    return model


def at_params(teacher: nn.Module, shape, params: int, round_to=None, importance: str = "group_norm"):
    """(student, ratio): the Torch-Pruning ratio whose student has the parameter count nearest ``params``."""
    lo, hi, best = 0.0, 0.95, None
    for _ in range(14):
        mid = (lo + hi) / 2
        student = torch_pruning_student(teacher, shape, mid, round_to, importance)
        n, _ = count(student, shape)
        if best is None or abs(n - params) < abs(best[2] - params):
            best = (student, mid, n)
        lo, hi = (mid, hi) if n > params else (lo, mid)
    return best[0], best[1]


def plan_from_pruned(teacher: nn.Module, student: nn.Module, groups) -> PrunePlan:
    """The hakd plan that keeps exactly the channels ``student`` kept, found through each group's
    first BatchNorm (its running means identify the surviving channels)."""
    keep = {}
    for g in groups.prunable():
        bn = next((m.module for m in g.members if m.role == "channel"
                   and isinstance(teacher.get_submodule(m.module), nn.BatchNorm2d)), None)
        if bn is None:
            raise ValueError(f"group {g.name} has no BatchNorm to identify its kept channels by")
        full = teacher.get_submodule(bn).running_mean.numpy()
        kept = student.get_submodule(bn).running_mean.numpy()
        index = [int(np.flatnonzero(full == v)[0]) for v in kept]
        if len(set(index)) != len(index):
            raise ValueError(f"group {g.name}: running means are not unique; cannot tell its kept channels apart")
        keep[g.name] = tuple(sorted(index))
    return groups.plan(keep=keep, note="torch-pruning")
