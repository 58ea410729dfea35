"""Supervised training of a teacher: SGD with a step schedule, resumable every epoch.

The run folder holds ``checkpoint.pt`` (model, optimiser, schedule, history; written
atomically after every epoch), ``metrics.csv`` (one row per epoch) and
``config.json``. A killed run continues from its last finished epoch::

    train_split, test_split = data.load(DataConfig("fashion-mnist"))
    net = models.create("resnet20", in_channels=1)
    fit(net, train_split, test_split, TrainConfig(epochs=1), "runs/r20")
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from hakd.checkpoint import atomic_write_text, load_checkpoint
from hakd.config import TrainConfig, run_identity
from hakd.data import Split
from hakd.device import training_device
from hakd.errors import CheckpointError
from hakd.loop import Position, Task, is_writer, train_loop, use_threads

__all__ = ["fit", "evaluate", "load_trained", "run_config", "write_metrics", "Supervised", "CHECKPOINT", "METRICS"]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 256) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``split``, in eval mode, on the device the
    model is on."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    device = next(model.parameters()).device
    for x, y in split.loader(batch_size, shuffle=False):
        x, y = x.to(device), y.to(device)
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
    model.train(was_training)
    return loss / len(split), correct / len(split)


def write_metrics(out: Path, history: list) -> None:
    lines = [",".join(COLUMNS)] + [",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS) for row in history]
    atomic_write_text(out / METRICS, "\n".join(lines) + "\n")


def _differences(saved: dict, now: dict) -> dict:
    """{option: (saved, now)} for what differs between two run identities (config options by name,
    other nested entries as ``key.entry``, e.g. ``train_data.images``)."""
    out = {}
    for key in sorted({*saved, *now}):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            name = "{}" if key == "config" else f"{key}.{{}}"
            out.update({name.format(k): (a.get(k), b.get(k)) for k in sorted({*a, *b}) if a.get(k) != b.get(k)})
        elif a != b:
            out[key] = (a, b)
    return out


class Supervised(Task):
    """Training with a test evaluation, metrics and a line per epoch (rank 0 only); subclasses
    bring another loss (distillation)."""

    name = "training"

    def __init__(self, model, test: Split, out: Path, run_id: dict, optimizer, epochs: int):
        self.model, self.test, self.out, self.run_id, self.optimizer, self.epochs = model, test, out, run_id, optimizer, epochs
        self.history: list = []

    def after_epoch(self, pos: Position) -> None:
        if not is_writer():
            return
        test_loss, test_acc = evaluate(self.model, self.test)
        row = dict(epoch=pos.epoch, lr=self.optimizer.param_groups[0]["lr"], train_loss=pos.train_loss,
                   train_acc=pos.train_acc, test_loss=test_loss, test_acc=test_acc, seconds=time.time() - pos.epoch_start)
        self.history.append(row)
        write_metrics(self.out, self.history)
        prefix = "epoch" if self.name == "training" else f"{self.name} epoch"
        print(f"{prefix} {pos.epoch}/{self.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}, "
              f"test loss {test_loss:.4f} acc {test_acc:.4f} ({row['seconds']:.1f} s)", flush=True)

    def state(self) -> dict:
        return {"run": self.run_id, "history": self.history}

    def load_state(self, state: dict) -> None:
        saved = dict(state.get("run") or {})
        if isinstance(saved.get("config"), dict):  # runs saved before threads left a run's identity still resume
            saved["config"] = run_identity(saved["config"])
        current = dict(self.run_id)
        if "train_data" not in saved:  # runs saved before their data was fingerprinted still resume
            current.pop("train_data", None)
        if saved != current:
            differ = _differences(saved, current)
            raise CheckpointError(
                f"checkpoint {self.out / CHECKPOINT} belongs to another run (it differs in {', '.join(differ)}: "
                + "; ".join(f"{k} was {a!r}, now {b!r}" for k, (a, b) in list(differ.items())[:4])
                + "); use another --out folder, or the same model, options and data"
            )
        self.history = list(state.get("history", []))


def fit(
    model: nn.Module,
    train: Split,
    test: Split,
    config: TrainConfig,
    out: str | Path,
    resume: bool = False,
    run_info: Optional[dict] = None,
    progress: Optional[bool] = None,
) -> list[dict]:
    """Train ``model`` in place for ``config.epochs`` on ``config.device`` (the model is on the
    CPU again after); returns the per-epoch history.

    ``run_info`` (e.g. the model name and data set) is stored with the checkpoint and
    must match on ``resume``, as must the config and the training data (its fingerprint).
    ``progress=None`` shows a bar only on a terminal (and a line every 30 s otherwise).
    """
    device = training_device(config.device, config.precision)  # an accelerator that is not here: refused before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    use_threads(config.threads)
    model.to(device)
    run_id = {"config": config.identity(), "train_data": train.fingerprint(), **(run_info or {})}
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestone_epochs(), config.lr_gamma)
    task = Supervised(model, test, out, run_id, optimizer, config.epochs)
    if (out / CHECKPOINT).exists() and not resume:
        raise CheckpointError(f"{out} already holds a checkpoint; pass --resume to continue it, or choose another --out")
    if (out / CHECKPOINT).exists():
        task.load_state(load_checkpoint(out / CHECKPOINT))
        print(f"resuming {out} after epoch {len(task.history)}/{config.epochs}")
    else:
        if resume:
            print(f"no run in {out} yet: starting a new one")
        torch.manual_seed(config.seed)
    if is_writer():
        atomic_write_text(out / "config.json", json.dumps(run_id, indent=2, sort_keys=True))
    try:
        train_loop(model, optimizer, train.loader(config.batch_size, seed=config.seed, pin=device.type == "cuda"), task,
                   out / CHECKPOINT, epochs=config.epochs, scheduler=scheduler, resume=resume, progress=progress,
                   precision=config.precision)
    finally:
        model.to("cpu")  # where compiling and measuring happen
    return task.history


def load_trained(run_dir: str | Path) -> nn.Module:
    """Rebuild the zoo model a ``hakd train`` run folder holds, with its latest weights, in eval mode."""
    from hakd import models

    path = Path(run_dir) / CHECKPOINT
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a finished `hakd train` run folder: it has no {CHECKPOINT} "
                              "(train a model with `hakd train MODEL --out FOLDER`, or check the path)")
    state = load_checkpoint(path)
    run = state.get("run", {})
    if "model" not in run:
        raise CheckpointError(f"{path} does not say which zoo model it holds; it was not written by `hakd train`")
    model = models.create(run["model"], in_channels=run["in_channels"], num_classes=run["num_classes"])
    model.load_state_dict(state["model"])
    return model.eval()


def run_config(run_dir: str | Path) -> dict:
    """The ``config.json`` of a ``hakd train`` run folder (model, data set, options)."""
    path = Path(run_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{run_dir} is not a `hakd train` run folder: it has no config.json "
                              "(train a teacher with `hakd train MODEL --out FOLDER`)")
    try:
        run = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"{path} is not valid JSON ({e}); restore it from a copy") from e
    if not isinstance(run, dict) or "data" not in run:
        raise CheckpointError(f"{path} does not name the run's data set: it was not written by `hakd train`")
    return run
