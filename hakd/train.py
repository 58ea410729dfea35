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
import math
import time
from pathlib import Path
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from hakd.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from hakd.config import TrainConfig
from hakd.data import Split
from hakd.errors import CheckpointError, TrainingError

__all__ = ["fit", "evaluate", "load_trained", "CHECKPOINT", "METRICS"]

CHECKPOINT = "checkpoint.pt"
METRICS = "metrics.csv"
COLUMNS = ("epoch", "lr", "train_loss", "train_acc", "test_loss", "test_acc", "seconds")


@torch.no_grad()
def evaluate(model: nn.Module, split: Split, batch_size: int = 256) -> tuple[float, float]:
    """(mean cross-entropy, accuracy) of ``model`` on ``split``, in eval mode."""
    was_training = model.training
    model.eval()
    loss, correct = 0.0, 0
    for x, y in split.loader(batch_size, shuffle=False):
        out = model(x)
        loss += F.cross_entropy(out, y, reduction="sum").item()
        correct += (out.argmax(1) == y).sum().item()
    model.train(was_training)
    return loss / len(split), correct / len(split)


def _write_metrics(out: Path, history: list) -> None:
    lines = [",".join(COLUMNS)] + [",".join(f"{row[c]:.6g}" if isinstance(row[c], float) else str(row[c]) for c in COLUMNS) for row in history]
    atomic_write_text(out / METRICS, "\n".join(lines) + "\n")


def _resume(out: Path, model, optimizer, scheduler, run_id: dict) -> tuple[int, list]:
    state = load_checkpoint(out / CHECKPOINT)
    if state.get("run") != run_id:
        raise CheckpointError(
            f"checkpoint {out / CHECKPOINT} belongs to another run ({state.get('run')}), not {run_id}; "
            "use another --out folder, or the same model and options"
        )
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        torch.set_rng_state(state["rng"])
    except (KeyError, RuntimeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {out / CHECKPOINT} does not fit this model: {e}") from e
    return state["epoch"], state["history"]


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
    """Train ``model`` in place for ``config.epochs``; returns the per-epoch history.

    ``run_info`` (e.g. the model name and data set) is stored with the checkpoint and
    must match on ``resume``. ``progress=None`` shows a bar only on a terminal.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if config.threads:
        torch.set_num_threads(config.threads)
    run_id = {"config": config.to_dict(), **(run_info or {})}
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestone_epochs(), config.lr_gamma)
    start, history = 0, []
    if resume and (out / CHECKPOINT).exists():
        start, history = _resume(out, model, optimizer, scheduler, run_id)
        print(f"resuming {out} after epoch {start}/{config.epochs}")
    elif (out / CHECKPOINT).exists():
        raise CheckpointError(f"{out} already holds a checkpoint; pass --resume to continue it, or choose another --out")
    else:
        torch.manual_seed(config.seed)
    atomic_write_text(out / "config.json", json.dumps(run_id, indent=2, sort_keys=True))
    loader = train.loader(config.batch_size, seed=config.seed)
    for epoch in range(start, config.epochs):
        loader.set_epoch(epoch)
        model.train()
        t0, seen, loss_sum, correct = time.time(), 0, 0.0, 0
        bar = tqdm(loader, desc=f"epoch {epoch + 1}/{config.epochs}", leave=False, disable=None if progress is None else not progress)
        for step, (x, y) in enumerate(bar):
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            if not math.isfinite(loss.item()):
                raise TrainingError(
                    f"loss became {loss.item()} at epoch {epoch + 1}, step {step}; the last good checkpoint "
                    f"({out / CHECKPOINT}) is kept: lower the learning rate (now {scheduler.get_last_lr()[0]}) and --resume"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        if seen == 0:
            raise TrainingError(f"the training data of {out} yielded no batch; check the data set and its limits")
        lr = scheduler.get_last_lr()[0]
        scheduler.step()
        test_loss, test_acc = evaluate(model, test)
        row = dict(epoch=epoch + 1, lr=lr, train_loss=loss_sum / seen, train_acc=correct / seen,
                   test_loss=test_loss, test_acc=test_acc, seconds=time.time() - t0)
        history.append(row)
        save_checkpoint({"run": run_id, "epoch": epoch + 1, "history": history, "model": model.state_dict(),
                         "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                         "rng": torch.get_rng_state()}, out / CHECKPOINT)
        _write_metrics(out, history)
        print(f"epoch {epoch + 1}/{config.epochs}: train loss {row['train_loss']:.4f} acc {row['train_acc']:.4f}, "
              f"test loss {test_loss:.4f} acc {test_acc:.4f} ({row['seconds']:.1f} s)", flush=True)
    return history


def load_trained(run_dir: str | Path) -> nn.Module:
    """Rebuild the zoo model a ``hakd train`` run folder holds, with its latest weights, in eval mode."""
    from hakd import models

    path = Path(run_dir) / CHECKPOINT
    state = load_checkpoint(path)
    run = state.get("run", {})
    if "model" not in run:
        raise CheckpointError(f"{path} does not say which zoo model it holds; it was not written by `hakd train`")
    model = models.create(run["model"], in_channels=run["in_channels"], num_classes=run["num_classes"])
    model.load_state_dict(state["model"])
    return model.eval()
