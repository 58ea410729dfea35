"""The one training loop: steps, checkpoints, resume, progress, and many processes.

Teacher training, Fisher pruning, Deep Compression's fine-tuning and distillation each bring
a :class:`Task` (its loss, its state, its hooks); :func:`train_loop` does the rest:

- SGD steps over a :class:`hakd.data.Loader` whose batches depend only on seed and epoch;
- a checkpoint (model, optimiser, schedule, RNG, position, the task's state) written
  atomically at the end of every epoch and whenever a hook asks (e.g. after a pruning
  decision), so a killed run resumes where its last checkpoint left it, bit for bit;
- progress: a bar on a terminal, a line every ``report_s`` seconds otherwise;
- under ``torchrun`` (``torch.distributed`` initialised, gloo on CPU): the model in
  DistributedDataParallel, each rank reading its own slice of every global batch, rank 0
  alone writing files.
"""

from __future__ import annotations

import dataclasses
import math
import sys
import time
from pathlib import Path
from typing import Optional, Tuple

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from hakd.checkpoint import load_checkpoint, save_checkpoint
from hakd.errors import CheckpointError, TrainingError

__all__ = ["Task", "Position", "train_loop", "rank", "is_writer", "use_threads"]


def use_threads(threads: Optional[int], log=print) -> int:
    """Set torch's threads for training to ``threads`` (None: leave torch's default), capped at
    the cores this process may run on, with a word when capped: more threads than cores only
    make every step wait on the others. Returns the threads in use::

        >>> use_threads(None) == torch.get_num_threads()   # None: torch's default, unchanged
        True
    """
    from hakd.device import usable_cores

    if threads:
        cores = usable_cores()
        if threads > cores:
            log(f"{threads} threads asked for, but this process may run on {cores} core(s): training with {cores}")
            threads = cores
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def world() -> int:
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def is_writer() -> bool:
    """Only rank 0 writes checkpoints, metrics and results."""
    return rank() == 0


class Task:
    """What a run brings to the loop. Override what differs from plain cross-entropy training."""

    name = "training"

    def loss(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(the loss to minimise, the logits): cross-entropy by default."""
        logits = model(x)
        return nn.functional.cross_entropy(logits, y), logits

    def after_step(self, position: "Position") -> bool:
        """Called after every optimiser step; True asks for a checkpoint now."""
        return False

    def finished(self, position: "Position") -> bool:
        """True stops the run (checked after every step)."""
        return False

    def after_epoch(self, position: "Position") -> None:
        """Called at the end of every epoch, before its checkpoint (evaluate, write metrics)."""

    def state(self) -> dict:
        """What the task must carry across a resume (plain values and tensors)."""
        return {}

    def load_state(self, state: dict) -> None:
        """Restore :meth:`state`; raise CheckpointError if the checkpoint belongs to another run."""


@dataclasses.dataclass
class Position:
    """Where a run is, and its running totals for the epoch under way."""

    epoch: int = 0  # epochs finished
    batch: int = 0  # batches of the current epoch done
    step: int = 0  # optimiser steps in all
    seen: int = 0
    loss_sum: float = 0.0
    correct: int = 0
    epoch_start: float = dataclasses.field(default_factory=time.time)
    last_loss: float = float("nan")

    @property
    def train_loss(self) -> float:
        return self.loss_sum / max(self.seen, 1)

    @property
    def train_acc(self) -> float:
        return self.correct / max(self.seen, 1)


class _Progress:
    """A tqdm bar on a terminal; one line every ``every_s`` seconds (across epochs) when output goes elsewhere."""

    def __init__(self, enabled: Optional[bool], every_s: float):
        self.enabled = is_writer() and enabled is not False
        self.tty = bool(enabled) or sys.stderr.isatty()
        self.every_s, self.last, self.bar, self.desc, self.total = every_s, time.time(), None, "", 0

    def epoch(self, desc: str, total: int) -> None:
        self.desc, self.total = desc, total
        if self.enabled and self.tty:
            self.bar = tqdm(total=total, desc=desc, leave=False)

    def update(self, done: int, pos: Position) -> None:
        if not self.enabled:
            return
        if self.bar is not None:
            self.bar.n = done
            self.bar.set_postfix(loss=f"{pos.train_loss:.3f}", acc=f"{pos.train_acc:.3f}")
        elif time.time() - self.last >= self.every_s:
            self.last = time.time()
            rate = pos.seen / max(time.time() - pos.epoch_start, 1e-9)
            print(f"{self.desc}: batch {done}/{self.total}, step {pos.step}, loss {pos.train_loss:.4f}, "
                  f"acc {pos.train_acc:.4f}, {rate:.0f} images/s", flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _shard(x: torch.Tensor, y: torch.Tensor):
    """This rank's slice of a global batch (the whole batch on one process)."""
    if world() == 1:
        return x, y
    return x[rank()::world()], y[rank()::world()]


def _reduce(pos: Position, loss_sum: float, correct: int, seen: int) -> Tuple[float, int, int]:
    if world() == 1:
        return loss_sum, correct, seen
    t = torch.tensor([loss_sum, float(correct), float(seen)], dtype=torch.float64)
    dist.all_reduce(t)
    return float(t[0]), int(t[1]), int(t[2])


def train_loop(model: nn.Module, optimizer: torch.optim.Optimizer, loader, task: Task, checkpoint: Optional[Path], *,
               epochs: Optional[int] = None, scheduler=None, resume: bool = False, progress: Optional[bool] = None,
               report_s: float = 30.0, precision: str = "fp32") -> Position:
    """Run ``task`` until ``epochs`` are done or ``task.finished``; returns the final position.

    ``checkpoint``: the file the run's state lives in (None: a run that keeps no state). Without
    ``resume`` it must not exist yet (the run writes it at once, so a failure leaves it behind);
    with ``resume`` the run continues from it (or starts, when there is none yet). The run trains
    on the device ``model`` is on (batches follow it), in ``precision`` (:mod:`hakd.device`); its
    checkpoint loads on any device."""
    from hakd.device import autocast, grad_scaler

    checkpoint = Path(checkpoint) if checkpoint is not None else None
    device = next(model.parameters()).device
    scaler = grad_scaler(device, precision)
    pos = Position()
    net = model
    if world() > 1:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if checkpoint is not None and checkpoint.exists() and not resume:
        raise CheckpointError(f"{checkpoint.parent} already holds a checkpoint ({checkpoint.name}); pass --resume "
                              "(resume=True) to continue it, or choose another output folder")
    if checkpoint is not None and checkpoint.exists():
        state = load_checkpoint(checkpoint)
        task.load_state(state)
        try:
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None:
                scheduler.load_state_dict(state["scheduler"])
            torch.set_rng_state(state["rng"])
            if device.type == "cuda" and state.get("cuda_rng") is not None:
                torch.cuda.set_rng_state(state["cuda_rng"], device)
            if scaler is not None and state.get("scaler"):
                scaler.load_state_dict(state["scaler"])
            pos = Position(epoch=state["epoch"], batch=state.get("batch", 0), step=state.get("step", 0))
        except (KeyError, RuntimeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {checkpoint} does not fit this model: {e}") from e

    def save() -> None:
        if is_writer() and checkpoint is not None:
            save_checkpoint({**task.state(), "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict() if scheduler is not None else None,
                             "rng": torch.get_rng_state(), "epoch": pos.epoch, "batch": pos.batch, "step": pos.step,
                             **({"cuda_rng": torch.cuda.get_rng_state(device)} if device.type == "cuda" else {}),
                             **({"scaler": scaler.state_dict()} if scaler is not None else {})},
                            checkpoint)

    if checkpoint is not None and not checkpoint.exists():
        save()
    if len(loader) == 0:
        raise TrainingError(f"the training data of {task.name} yielded no batch; check the data set and its limits")
    bar = _Progress(progress, report_s)
    while (epochs is None or pos.epoch < epochs) and not task.finished(pos):
        loader.set_epoch(pos.epoch)
        model.train()
        bar.epoch(f"{task.name} epoch {pos.epoch + 1}" + (f"/{epochs}" if epochs else ""), len(loader))
        pos.seen, pos.loss_sum, pos.correct, pos.epoch_start = 0, 0.0, 0, time.time()
        stopped = False
        for i, (x, y) in enumerate(loader):
            if i < pos.batch:
                continue
            x, y = _shard(x, y)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            with autocast(device, precision):
                loss, logits = task.loss(net, x, y)
            if not math.isfinite(loss.item()):
                raise TrainingError(f"{task.name} loss became {loss.item()} at epoch {pos.epoch + 1}, step {pos.step}; "
                                    f"the last checkpoint ({checkpoint or 'none: this run keeps no state'}) is kept: lower the learning rate "
                                    f"(now {optimizer.param_groups[0]['lr']}) and --resume")
            optimizer.zero_grad(set_to_none=True)
            if scaler is None:
                loss.backward()
                optimizer.step()
            else:  # fp16: the loss scaled up so that small gradients do not underflow, steps skipped on inf
                scaler.scale(loss).backward()
                scaler.step(optimizer)
                scaler.update()
            pos.step, pos.batch, pos.last_loss = pos.step + 1, i + 1, loss.item()
            loss_sum, correct, seen = _reduce(pos, loss.item() * len(y), int((logits.argmax(1) == y).sum()), len(y))
            pos.loss_sum, pos.correct, pos.seen = pos.loss_sum + loss_sum, pos.correct + correct, pos.seen + seen
            bar.update(i + 1, pos)
            if task.after_step(pos):
                save()
            if task.finished(pos):
                stopped = True
                break
        bar.close()
        if stopped:
            break
        pos.epoch, pos.batch = pos.epoch + 1, 0
        task.after_epoch(pos)  # before the schedule moves on: the epoch's own learning rate is still current
        if scheduler is not None:
            scheduler.step()
        save()
    return pos
