"""Fisher pruning over channel groups (Theis et al. 2018, as in the HAKD authors' code).

Fine-tune the model with channel probes in place; every ``prune_every`` steps remove the
channel with the lowest accumulated Fisher saliency over all prunable groups, then reset
the accumulators; stop when the target (channels, parameter or MAC fraction, or a
latency budget from the cost model) is met. The run folder holds ``state.pt`` (written
atomically after every removal: a killed run resumes from it), ``history.json`` (one
entry per removed channel) and, at the end, ``plan.json``::

    result = fisher_prune(gm, groups, train, PruneConfig(amount=0.5), "runs/prune")
    student = rebuild(result.model, groups, result.plan)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import fx

from hakd.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from hakd.config import PruneConfig
from hakd.data import Split
from hakd.errors import CheckpointError, ConfigError, TrainingError
from hakd.passes.counts import count
from hakd.passes.groups import ChannelGroups
from hakd.passes.probes import ProbedModel, insert_probes
from hakd.passes.rebuild import rebuild
from hakd.plan import PrunePlan

__all__ = ["fisher_prune", "PruneResult", "STATE", "HISTORY", "PLAN"]

STATE, HISTORY, PLAN = "state.pt", "history.json", "plan.json"


@dataclasses.dataclass
class PruneResult:
    plan: PrunePlan
    history: List[dict]
    model: fx.GraphModule  # the fine-tuned model at full width (apply ``plan`` with rebuild)


class _Target:
    """Measures how far a plan is from the pruning target."""

    def __init__(self, gm, groups, config: PruneConfig, input_shape, profiler=None):
        self.gm, self.groups, self.config, self.input_shape, self.profiler = gm, groups, config, input_shape, profiler
        if config.target == "latency" and profiler is None:
            raise ConfigError("PruneConfig(target='latency') needs a cost-model Profiler (fisher_prune(..., profiler=...))")
        self.full_params, self.full_macs = count(gm, input_shape)
        prunable = groups.prunable()
        if config.target == "channels" and config.amount < len(prunable):
            raise ConfigError(f"a target of {int(config.amount)} channels would empty a group: each of the "
                              f"{len(prunable)} prunable groups keeps at least one channel")

    def measure(self, plan: PrunePlan, widths: Dict[str, int]) -> dict:
        small = rebuild(self.gm, self.groups, plan)
        params, macs = count(small, self.input_shape)
        out = {"params": params, "macs": macs, "channels": sum(widths.values())}
        if self.config.target == "latency":
            out["latency_s"] = self.profiler.model(small).latency_s
        return out

    def met(self, m: dict) -> bool:
        c = self.config
        return {"channels": lambda: m["channels"] <= c.amount, "params": lambda: m["params"] <= c.amount * self.full_params,
                "macs": lambda: m["macs"] <= c.amount * self.full_macs,
                "latency": lambda: m["latency_s"] <= c.amount}[c.target]()


def _param_share(gm, groups, input_shape) -> Dict[str, float]:
    """Share of the model's parameters one channel of each group holds (for the penalised variant)."""
    full, _ = count(gm, input_shape)
    share = {}
    for g in groups.prunable():
        if g.width > 1:
            smaller = rebuild(gm, groups, PrunePlan.from_widths({g.name: g.width - 1}, groups.widths()))
            share[g.name] = (full - sum(p.numel() for p in smaller.parameters())) / full
    return share


def _choose(probed: ProbedModel, saliency: Dict[str, np.ndarray], penalty: float, share: Dict[str, float]):
    best = None
    for g, sal in saliency.items():
        alive = probed.alive[g]
        if alive.sum() <= 1:
            continue  # never empty a group
        score = np.where(alive, sal - penalty * share.get(g, 0.0), np.inf)
        k = int(np.argmin(score))
        if best is None or score[k] < best[2]:
            best = (g, k, float(score[k]), float(sal[k]))
    return best


def fisher_prune(gm: fx.GraphModule, groups: ChannelGroups, train: Split, config: PruneConfig, out,
                 resume: bool = False, profiler=None, test: Optional[Split] = None) -> PruneResult:
    """Fisher-prune a traced model on ``train``; returns the plan, the history and the fine-tuned model."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    input_shape = (1, *train.images.shape[1:])
    target = _Target(gm, groups, config, input_shape, profiler)
    torch.manual_seed(config.seed)
    probed = insert_probes(gm, groups)
    params = [p for p in probed.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    share = _param_share(gm, groups, input_shape) if config.penalty > 0 else {}
    step, history, position = 0, [], (0, 0)
    if resume and (out / STATE).exists():
        state = load_checkpoint(out / STATE)
        if state.get("config") != config.to_dict() or state.get("widths") != groups.widths():
            raise CheckpointError(f"{out / STATE} belongs to another pruning run; use another folder or the same model and config")
        probed.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        for g, alive in state["alive"].items():
            probed.alive[g] = np.array(alive, dtype=bool)
        step, history, position = state["step"], state["history"], tuple(state["position"])
        torch.set_rng_state(state["rng"])
        print(f"resuming {out} at step {step} after {len(history)} removed channels")
    elif (out / STATE).exists():
        raise CheckpointError(f"{out} already holds a pruning run; pass resume=True (--resume) to continue it")

    def checkpoint(pos):
        save_checkpoint({"config": config.to_dict(), "widths": groups.widths(), "model": probed.state_dict(),
                         "optimizer": optimizer.state_dict(), "alive": {g: a.tolist() for g, a in probed.alive.items()},
                         "step": step, "history": history, "position": list(pos), "rng": torch.get_rng_state()}, out / STATE)
        atomic_write_text(out / HISTORY, json.dumps(history, indent=1))

    plan = PrunePlan(probed.keep(), groups.widths())
    done = target.met(target.measure(plan, probed.widths()))
    loader = train.loader(config.batch_size, seed=config.seed)
    if len(loader) == 0:
        raise TrainingError("the training data for pruning yielded no batch; check the data set and its limits")
    if not (out / STATE).exists():
        checkpoint(position)  # from the start, a failed run leaves its state behind
    probed.train()
    probed.record(True)
    epoch, skip = position
    while not done:
        loader.set_epoch(epoch)
        for i, (x, y) in enumerate(loader):
            if i < skip:
                continue
            loss = F.cross_entropy(probed(x), y)
            if not math.isfinite(loss.item()):
                raise TrainingError(f"pruning loss became {loss.item()} at step {step}; the state after the last removed "
                                    f"channel is kept in {out / STATE}: lower the learning rate (now {config.lr}) and resume")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            probed.count(len(y))
            step += 1
            if step % config.prune_every == 0:
                choice = _choose(probed, probed.saliency(), config.penalty, share)
                if choice is None:
                    raise ConfigError("every prunable group is down to one channel and the target is still not met")
                g, k, score, sal = choice
                probed.mask(g, k)
                probed.reset()
                plan = PrunePlan(probed.keep(), groups.widths())
                measured = target.measure(plan, probed.widths())
                history.append({"step": step, "group": g, "channel": k, "saliency": sal, "score": score,
                                "width": int(probed.alive[g].sum()), "train_loss": float(loss.item()), **measured})
                done = target.met(measured)
                checkpoint((epoch, i + 1))
                if done:
                    break
            if config.max_steps and step >= config.max_steps:
                raise TrainingError(f"pruning reached max_steps={config.max_steps} before its target; "
                                    f"raise max_steps or prune more often (prune_every={config.prune_every})")
        epoch, skip = epoch + 1, 0
    probed.record(False)
    checkpoint((epoch, skip))
    plan = PrunePlan(probed.keep(), groups.widths(), note=f"fisher {config.target}={config.amount} after {step} steps")
    plan.save(out / PLAN)
    return PruneResult(plan, history, _unprobed(probed, gm))


def _unprobed(probed: ProbedModel, gm: fx.GraphModule) -> fx.GraphModule:
    """The fine-tuned weights in a copy of the original traced model (probes removed)."""
    clean = copy.deepcopy(gm)
    state = {k[len("gm."):]: v for k, v in probed.state_dict().items() if k.startswith("gm.") and "hakd_probe" not in k}
    clean.load_state_dict(state)
    return clean
