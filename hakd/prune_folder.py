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
        importance = _read_importance(folder / IMPORTANCE, groups)
    else:
        from hakd.baselines.widths import l1_importance

        importance = l1_importance(gm, groups)
    return gm, groups, plan, importance


def _read_importance(path: Path, groups) -> dict:
    """{group: a finite score per channel} from ``path``, checked against the base model's groups."""
    fix = "fix it, or delete it to rank channels by their L1 norms"
    try:
        saved = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path} is not JSON ({e}); {fix}") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} holds a {type(saved).__name__}, not {{group: [a score per channel]}}; {fix}")
    widths, importance = groups.widths(), {}
    for g, scores in saved.items():
        if g not in widths:
            raise ConfigError(f"{path} scores a group {g!r} that the base model does not have; {fix}")
        ok = isinstance(scores, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in scores)
        values = np.asarray(scores, dtype=float) if ok else None
        if values is None or len(values) != widths[g] or not np.isfinite(values).all():
            raise ConfigError(f"{path}: group {g!r} needs {widths[g]} finite scores (one per channel), got "
                              f"{str(scores)[:80]}; {fix}")
        importance[g] = values
    return importance
