"""Fisher pruning over channel groups (Theis et al. 2018, as in the HAKD authors' code).

Fine-tune the model with channel probes in place; every ``prune_every`` steps remove the
channel with the lowest accumulated Fisher saliency over all prunable groups, then reset
the accumulators; stop when the target (channels, parameter or MAC fraction, or a
latency budget from the cost model) is met. The run folder holds ``state.pt`` (written
atomically after every removal: a killed run resumes from it), ``history.json`` (one
entry per removed channel), ``importance.json`` (each channel's saliency: a kept channel's
over the last window, a pruned one's at its removal; snapping and the budget allocator
rank channels by it) and, at the end, ``plan.json``::

    result = fisher_prune(gm, groups, train, PruneConfig(amount=0.5), "runs/prune")
    student = rebuild(result.model, groups, result.plan)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Callable, Dict, List, Optional

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

__all__ = ["fisher_prune", "PruneResult", "load_importance", "STATE", "HISTORY", "PLAN", "IMPORTANCE"]

STATE, HISTORY, PLAN, IMPORTANCE = "state.pt", "history.json", "plan.json", "importance.json"
LatencyOf = Callable[[Dict[str, int]], float]  # widths of every group -> predicted seconds
LatencySaved = Callable[[str, int], float]  # (group, width) -> share of the latency one channel less saves


@dataclasses.dataclass
class PruneResult:
    plan: PrunePlan
    history: List[dict]
    model: fx.GraphModule  # the fine-tuned model at full width (apply ``plan`` with rebuild)
    importance: Dict[str, np.ndarray] = dataclasses.field(default_factory=dict)  # per group, one saliency per channel


def load_importance(folder) -> Dict[str, np.ndarray]:
    """The per-channel importance a Fisher run folder holds (``importance.json``)."""
    path = Path(folder) / IMPORTANCE
    if not path.is_file():
        raise CheckpointError(f"no {IMPORTANCE} in {folder}: it is written by Fisher pruning (fisher_prune, `hakd prune`)")
    try:
        return {g: np.asarray(v, dtype=float) for g, v in json.loads(path.read_text()).items()}
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path} is damaged ({type(e).__name__}: {e})") from e


class _Target:
    """Measures how far a plan is from the pruning target."""

    def __init__(self, gm, groups, config: PruneConfig, input_shape, latency_of: Optional[LatencyOf] = None):
        self.gm, self.groups, self.config, self.input_shape, self.latency_of = gm, groups, config, input_shape, latency_of
        if config.target == "latency" and latency_of is None:
            raise ConfigError("PruneConfig(target='latency') needs the cost model's prediction: pass "
                              "fisher_prune(..., latency_of=hakd.sweep.latency_of(Profiler(target), gm, groups))")
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
            out["latency_s"] = self.latency_of(plan.pruned_widths())
        return out

    def met(self, m: dict) -> bool:
        c = self.config
        return {"channels": lambda: m["channels"] <= c.amount, "params": lambda: m["params"] <= c.amount * self.full_params,
                "macs": lambda: m["macs"] <= c.amount * self.full_macs,
                "latency": lambda: m["latency_s"] <= c.amount}[c.target]()


def _penalty_share(gm, groups, config: PruneConfig, input_shape, latency_saved: Optional[LatencySaved]):
    """(group, width) -> what one channel less saves, as a share of the model: parameters, or latency."""
    if config.penalty == 0:
        return lambda g, w: 0.0
    if config.penalty_on == "latency":
        if latency_saved is None:
            raise ConfigError("PruneConfig(penalty_on='latency') needs the staircases: pass fisher_prune(..., "
                              "latency_saved=hakd.sweep.latency_saved(staircases, full_latency_s))")
        return latency_saved
    share = _param_share(gm, groups, input_shape)
    return lambda g, w: share.get(g, 0.0)


def _param_share(gm, groups, input_shape) -> Dict[str, float]:
    """Share of the model's parameters one channel of each group holds (for the penalised variant)."""
    full, _ = count(gm, input_shape)
    share = {}
    for g in groups.prunable():
        if g.width > 1:
            smaller = rebuild(gm, groups, PrunePlan.from_widths({g.name: g.width - 1}, groups.widths()))
            share[g.name] = (full - sum(p.numel() for p in smaller.parameters())) / full
    return share


def _choose(probed: ProbedModel, saliency: Dict[str, np.ndarray], penalty: float, share: Callable[[str, int], float]):
    best = None
    for g, sal in saliency.items():
        alive = probed.alive[g]
        if alive.sum() <= 1:
            continue  # never empty a group
        score = np.where(alive, sal - penalty * share(g, int(alive.sum())), np.inf)
        k = int(np.argmin(score))
        if best is None or score[k] < best[2]:
            best = (g, k, float(score[k]), float(sal[k]))
    return best


def fisher_prune(gm: fx.GraphModule, groups: ChannelGroups, train: Split, config: PruneConfig, out,
                 resume: bool = False, latency_of: Optional[LatencyOf] = None,
                 latency_saved: Optional[LatencySaved] = None) -> PruneResult:
    """Fisher-prune a traced model on ``train``; returns the plan, the history, the fine-tuned
    model and each channel's importance.

    ``latency_of(widths)``: predicted seconds of the model at those group widths, for
    ``target="latency"``; ``latency_saved(group, width)``: the share of the model's latency
    one channel less saves there, for ``penalty_on="latency"`` (both from the cost model,
    :mod:`hakd.sweep`: this pass never imports it)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    input_shape = (1, *train.images.shape[1:])
    target = _Target(gm, groups, config, input_shape, latency_of)
    torch.manual_seed(config.seed)
    probed = insert_probes(gm, groups)
    params = [p for p in probed.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    share = _penalty_share(gm, groups, config, input_shape, latency_saved)
    importance = {g.name: np.zeros(g.width) for g in groups.prunable()}
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
        importance = {g: np.asarray(v, dtype=float) for g, v in state.get("importance", importance).items()}
        torch.set_rng_state(state["rng"])
        print(f"resuming {out} at step {step} after {len(history)} removed channels")
    elif (out / STATE).exists():
        raise CheckpointError(f"{out} already holds a pruning run; pass resume=True (--resume) to continue it")

    def checkpoint(pos):
        save_checkpoint({"config": config.to_dict(), "widths": groups.widths(), "model": probed.state_dict(),
                         "optimizer": optimizer.state_dict(), "alive": {g: a.tolist() for g, a in probed.alive.items()},
                         "step": step, "history": history, "position": list(pos), "rng": torch.get_rng_state(),
                         "importance": {g: v.tolist() for g, v in importance.items()}}, out / STATE)
        atomic_write_text(out / HISTORY, json.dumps(history, indent=1))
        atomic_write_text(out / IMPORTANCE, json.dumps({g: v.tolist() for g, v in importance.items()}))

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
                saliency = probed.saliency()
                for g, sal in saliency.items():  # a channel's importance: its saliency over its last window alive
                    importance[g][probed.alive[g]] = sal[probed.alive[g]]
                choice = _choose(probed, saliency, config.penalty, share)
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
    return PruneResult(plan, history, _unprobed(probed, gm), importance)


def _unprobed(probed: ProbedModel, gm: fx.GraphModule) -> fx.GraphModule:
    """The fine-tuned weights in a copy of the original traced model (probes removed)."""
    clean = copy.deepcopy(gm)
    state = {k[len("gm."):]: v for k, v in probed.state_dict().items() if k.startswith("gm.") and "hakd_probe" not in k}
    clean.load_state_dict(state)
    return clean
