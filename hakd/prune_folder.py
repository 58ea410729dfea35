"""Prune folders: a plan with everything needed to use it, written and read in one place.

A prune folder holds ``plan.json``, ``base.pt`` (the full-width model the plan applies to),
``model.pt`` (the rebuilt, physically smaller model: ``hakd export --model-file``, ``hakd
distill --student``), ``importance.json`` (a score per channel: Fisher saliency, or L1 norms)
and, once measured, ``staircases.json``. `hakd prune`, `hakd snap` and :func:`hakd.optimize`
write them::

    write_prune_folder("runs/snap", gm, groups, plan, importance)
    gm, groups, plan, importance = load_prune_folder("runs/snap")
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict

import numpy as np
import torch
from torch import fx

from hakd.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from hakd.errors import ConfigError
from hakd.passes.counts import count
from hakd.passes.groups import ChannelGroups, find_groups
from hakd.passes.rebuild import rebuild
from hakd.passes.trace import input_shape, trace
from hakd.plan import PrunePlan

__all__ = ["write_prune_folder", "load_prune_folder", "BASE", "MODEL", "PLAN", "IMPORTANCE", "STAIRS"]

BASE, MODEL, PLAN, IMPORTANCE, STAIRS = "base.pt", "model.pt", "plan.json", "importance.json", "staircases.json"


def write_prune_folder(out, base: fx.GraphModule, groups: ChannelGroups, plan: PrunePlan,
                       importance: Dict[str, np.ndarray]) -> dict:
    """Write the folder; returns the pruned and full parameter and MAC counts."""
    out = Path(out)
    shape = input_shape(base)
    pruned = rebuild(base, groups, plan)
    plan.save(out / PLAN)
    save_checkpoint({"model": base, "input_shape": list(shape)}, out / BASE)
    save_checkpoint({"model": pruned, "input_shape": list(shape), "plan": plan.to_dict()}, out / MODEL)
    atomic_write_text(out / IMPORTANCE, json.dumps({g: [float(v) for v in s] for g, s in importance.items()}))
    (params, macs), (full_params, full_macs) = count(pruned, shape), count(base, shape)
    return {"params": params, "macs": macs, "full_params": full_params, "full_macs": full_macs}


def load_prune_folder(folder):
    """(base GraphModule, groups, plan, importance) of a prune folder; L1 norms when it holds no importance."""
    folder = Path(folder)
    if not (folder / BASE).is_file() or not (folder / PLAN).is_file():
        raise ConfigError(f"{folder} is not a prune folder (it needs {BASE} and {PLAN}, written by `hakd prune`, "
                          "`hakd snap` or hakd.optimize)")
    saved = load_checkpoint(folder / BASE)
    gm = trace(saved["model"].eval(), torch.zeros(saved["input_shape"]))
    groups = find_groups(gm)
    plan = PrunePlan.load(folder / PLAN)
    plan.validate(groups)
    if (folder / IMPORTANCE).is_file():
        importance = {g: np.asarray(v, dtype=float) for g, v in json.loads((folder / IMPORTANCE).read_text()).items()}
    else:
        from hakd.baselines.widths import l1_importance

        importance = l1_importance(gm, groups)
    return gm, groups, plan, importance
