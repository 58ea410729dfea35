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
from pathlib import Path
from typing import Callable, Dict, List, Optional

import numpy as np
import torch
from torch import fx

from hakd.checkpoint import atomic_write_text, load_checkpoint
from hakd.config import PruneConfig, run_identity
from hakd.data import Split
from hakd.device import training_device
from hakd.errors import CheckpointError, ConfigError, TrainingError
from hakd.loop import Task, train_loop, use_threads
from hakd.passes.counts import count, params_per_channel
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
    names = [g.name for g in groups.prunable()]
    return {g: n / full for g, n in params_per_channel(gm, groups, groups.plan(), names, input_shape).items()}


def _choose(probed: ProbedModel, saliency: Dict[str, np.ndarray], penalty: float, share: Callable[[str, int], float],
            slices: Dict[str, int]):
    """(group, its channels to remove, score, saliency) of the least costly removal: one channel,
    or in a group in n slices the least costly channel of each slice (scored by their mean)."""
    best = None
    for g, sal in saliency.items():
        alive, n = probed.alive[g], slices.get(g, 1)
        if alive.sum() <= n:
            continue  # never empty a group (or a slice)
        score = np.where(alive, sal - penalty * share(g, int(alive.sum())), np.inf).reshape(n, -1)
        ks = score.argmin(1) + np.arange(n) * score.shape[1]
        mean = float(score.reshape(-1)[ks].mean())
        if best is None or mean < best[2]:
            best = (g, ks.tolist(), mean, float(sal[ks].mean()))
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
    device = training_device(config.device, config.precision)  # an accelerator that is not here: refused before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    use_threads(config.threads)
    input_shape = (1, *train.images.shape[1:])
    target = _Target(gm, groups, config, input_shape, latency_of)
    torch.manual_seed(config.seed)
    probed = insert_probes(gm, groups).to(device)
    params = [p for p in probed.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    task = _FisherTask(probed, groups, config, target, _penalty_share(gm, groups, config, input_shape, latency_saved), out,
                       train.fingerprint())
    if resume and (out / STATE).exists():
        task.load_state(load_checkpoint(out / STATE))
        print(f"resuming {out} after {len(task.history)} removed channels")
    elif resume:
        print(f"no pruning run in {out} yet: starting a new one")
    elif (out / STATE).exists():
        raise CheckpointError(f"{out} already holds a pruning run; pass resume=True (--resume) to continue it")
    task.done = target.met(target.measure(groups.plan(keep=probed.keep()), probed.widths()))
    task.write()
    probed.record(True)
    try:
        pos = train_loop(probed, optimizer, train.loader(config.batch_size, seed=config.seed, pin=device.type == "cuda"),
                         task, out / STATE, resume=True, precision=config.precision)
    finally:
        probed.to("cpu")  # the fine-tuned model goes on to be measured and compiled
    probed.record(False)
    plan = groups.plan(keep=probed.keep(), note=f"fisher {config.target}={config.amount} after {pos.step} steps")
    plan.save(out / PLAN)
    return PruneResult(plan, task.history, _unprobed(probed, gm), task.importance)


class _FisherTask(Task):
    """Fine-tune with probes; every ``prune_every`` steps remove the least salient channel."""

    name = "pruning"

    def __init__(self, probed: ProbedModel, groups: ChannelGroups, config: PruneConfig, target: _Target, share, out: Path,
                 train_data: dict):
        self.probed, self.groups, self.config, self.target, self.share, self.out = probed, groups, config, target, share, out
        self.train_data = train_data  # the fingerprint of the data it prunes on
        self.importance = {g.name: np.zeros(g.width) for g in groups.prunable()}
        self.history: List[dict] = []
        self.done = False
        self.batch = 0

    def loss(self, model, x, y):
        self.batch = len(y)
        return super().loss(model, x, y)

    def after_step(self, pos) -> bool:
        self.probed.count(self.batch)
        if pos.step % self.config.prune_every == 0:
            saliency = self.probed.saliency()
            for g, sal in saliency.items():  # a channel's importance: its saliency over its last window alive
                self.importance[g][self.probed.alive[g]] = sal[self.probed.alive[g]]
            choice = _choose(self.probed, saliency, self.config.penalty, self.share, self.groups.slices())
            if choice is None:
                raise ConfigError("every prunable group is down to one channel and the target is still not met")
            g, ks, score, _ = choice
            for k in ks:
                self.probed.mask(g, k)
            self.probed.reset()
            measured = self.target.measure(self.groups.plan(keep=self.probed.keep()), self.probed.widths())
            for k in ks:  # one entry per channel removed (a group in slices loses one per slice at once)
                self.history.append({"step": pos.step, "group": g, "channel": k, "saliency": float(saliency[g][k]),
                                     "score": score, "width": int(self.probed.alive[g].sum()), "train_loss": pos.last_loss,
                                     **measured})
            self.done = self.target.met(measured)
            self.write()
            return True
        if self.config.max_steps and pos.step >= self.config.max_steps:
            raise TrainingError(f"pruning reached max_steps={self.config.max_steps} before its target; "
                                f"raise max_steps or prune more often (prune_every={self.config.prune_every})")
        return False

    def finished(self, pos) -> bool:
        return self.done

    def write(self) -> None:
        atomic_write_text(self.out / HISTORY, json.dumps(self.history, indent=1))
        atomic_write_text(self.out / IMPORTANCE, json.dumps({g: v.tolist() for g, v in self.importance.items()}))

    def state(self) -> dict:
        return {"config": self.config.to_dict(), "widths": self.groups.widths(), "train_data": self.train_data,
                "history": self.history,
                "alive": {g: a.tolist() for g, a in self.probed.alive.items()},
                "importance": {g: v.tolist() for g, v in self.importance.items()}}

    def load_state(self, state: dict) -> None:
        saved = run_identity(state.get("config") or {})
        data = state.get("train_data", self.train_data)  # runs saved before data was fingerprinted still resume
        if saved != self.config.identity() or state.get("widths") != self.groups.widths() or data != self.train_data:
            differ = [k for k, v in self.config.identity().items() if saved.get(k) != v]
            differ += ["the training data"] if data != self.train_data else []
            raise CheckpointError(f"{self.out / STATE} belongs to another pruning run (it differs in "
                                  f"{', '.join(differ) or 'the model'}); use another folder or the same model, config and data")
        for g, alive in state["alive"].items():
            self.probed.alive[g] = np.array(alive, dtype=bool)
        self.history = list(state["history"])
        self.importance = {g: np.asarray(v, dtype=float) for g, v in state.get("importance", self.importance).items()}


def _unprobed(probed: ProbedModel, gm: fx.GraphModule) -> fx.GraphModule:
    """The fine-tuned weights in a copy of the original traced model (probes removed)."""
    clean = copy.deepcopy(gm)
    state = {k[len("gm."):]: v for k, v in probed.state_dict().items() if k.startswith("gm.") and "hakd_probe" not in k}
    clean.load_state_dict(state)
    return clean
