"""Distillation: retrain the student from its teacher with KD and attention transfer.

Loss (HAKD's recipe): ``(1 - alpha) * CE + alpha * KD + beta * sum over stages of AT``, with
KD = Hinton's ``KL(softmax(t / T) || softmax(s / T)) * T^2`` and AT = Zagoruyko & Komodakis'
``mean((at(s) - at(t))^2)``, ``at(x) = normalize(mean_c(x^2).flatten(1))``. Stages are
matched by spatial size from the two fx graphs (the last tensor of each resolution), not by
module names, so any traced pair works. Training runs on the one loop (:mod:`hakd.loop`):
checkpoints, ``resume``, progress, and DistributedDataParallel under ``torchrun``::

    history = distill(teacher_gm, student_gm, train, test, DistillConfig(epochs=30), "runs/student")

>>> s, t = torch.tensor([[2.0, 0.0]]), torch.tensor([[0.0, 2.0]])
>>> round(float(kd_loss(s, t, temperature=1.0)), 4)   # KL(softmax(t) || softmax(s))
1.5232
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import fx, nn

from hakd.checkpoint import atomic_write_text, load_checkpoint, save_checkpoint
from hakd.config import DistillConfig
from hakd.data import Split
from hakd.device import training_device
from hakd.errors import CheckpointError, ConfigError
from hakd.loop import is_writer, train_loop, use_threads
from hakd.passes.trace import input_shape
from hakd.train import CHECKPOINT, Supervised

__all__ = ["kd_loss", "attention", "at_loss", "stage_nodes", "with_stages", "match_stages", "reset_parameters",
           "distill", "STUDENT"]

STUDENT = "model.pt"


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 4.0) -> torch.Tensor:
    """Hinton's distillation loss: KL divergence of the softened distributions, times T^2 (batch mean)."""
    t = temperature
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="batchmean") * t * t


def attention(x: torch.Tensor) -> torch.Tensor:
    """The normalised spatial attention map of a (N, C, H, W) activation: (N, H*W)."""
    return F.normalize(x.pow(2).mean(1).flatten(1))


def at_loss(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Attention transfer between two activations of the same spatial size (any channel counts)."""
    return (attention(student) - attention(teacher)).pow(2).mean()


def stage_nodes(gm: fx.GraphModule) -> Dict[Tuple[int, int], fx.Node]:
    """The last node of each spatial resolution (larger than 1x1) in graph order: the stage outputs."""
    last: Dict[Tuple[int, int], fx.Node] = {}
    for n in gm.graph.nodes:
        meta = n.meta.get("tensor_meta")
        shape = getattr(meta, "shape", None)
        if n.op in ("call_module", "call_function", "call_method") and shape is not None and len(shape) == 4 \
                and shape[2] * shape[3] > 1:
            last[(int(shape[2]), int(shape[3]))] = n
    return last


def with_stages(gm: fx.GraphModule, resolutions) -> fx.GraphModule:
    """A GraphModule that shares ``gm``'s modules and returns ``(output, *stage tensors)``."""
    stages = stage_nodes(gm)
    graph, values = fx.Graph(), {}
    out = graph.graph_copy(gm.graph, values)
    graph.output((out, *(values[stages[r]] for r in resolutions)))
    return fx.GraphModule(gm, graph)


def match_stages(teacher: fx.GraphModule, student: fx.GraphModule) -> List[Tuple[int, int]]:
    """The resolutions both models have a stage at; a teacher stage the student lacks is skipped with
    a warning; none in common is a ConfigError."""
    t, s = stage_nodes(teacher), stage_nodes(student)
    common = [r for r in t if r in s]
    missing = [r for r in t if r not in s]
    if not common:
        raise ConfigError(f"attention transfer: no stage of the student matches the teacher's in spatial size "
                          f"(teacher {list(t)}, student {list(s)}); use DistillConfig(beta=0) to distil without it")
    if missing:
        warnings.warn(f"attention transfer skips the teacher's stage(s) at {missing}: the student has no tensor of that "
                      f"spatial size (its stages: {list(s)})")
    return common


def reset_parameters(model: nn.Module, seed: int) -> nn.Module:
    """Fresh initialisation of every layer (and BatchNorm statistics), in place, from ``seed``."""
    torch.manual_seed(seed)
    for m in model.modules():
        if hasattr(m, "reset_parameters") and m is not model:
            m.reset_parameters()
    return model


def _check_pair(teacher: fx.GraphModule, student: fx.GraphModule) -> None:
    ts, ss = input_shape(teacher), input_shape(student)
    to, so = teacher(torch.zeros(ts)), student(torch.zeros(ss))
    if ts[1:] != ss[1:] or to.shape[1:] != so.shape[1:]:
        raise ConfigError(f"teacher and student do not fit: the teacher takes {list(ts[1:])} and gives {to.shape[1]} "
                          f"classes, the student takes {list(ss[1:])} and gives {so.shape[1]}; distil a student "
                          "pruned from this teacher")


class _Distill(Supervised):
    """Supervised training of the student with the distillation loss."""

    name = "distillation"

    def __init__(self, teacher, student, config: DistillConfig, test: Split, out: Path, run_id: dict, optimizer):
        super().__init__(student, test, out, run_id, optimizer, config.epochs)
        self.teacher, self.config = teacher, config

    def loss(self, model, x, y):
        c = self.config
        with torch.no_grad():
            t_out, *t_stages = self.teacher(x)
        s_out, *s_stages = model(x)
        loss = F.cross_entropy(s_out, y)
        if c.loss in ("kd", "kd+at"):
            loss = (1 - c.alpha) * loss + c.alpha * kd_loss(s_out, t_out, c.temperature)
        if c.loss == "kd+at" and c.beta > 0:
            loss = loss + c.beta * sum(at_loss(s, t) for s, t in zip(s_stages, t_stages))
        return loss, s_out


def distill(teacher: fx.GraphModule, student: fx.GraphModule, train: Split, test: Split, config: DistillConfig, out,
            resume: bool = False, run_info: Optional[dict] = None, progress: Optional[bool] = None) -> list:
    """Train ``student`` (in place; ``config.init="reset"`` reinitialises it first) from ``teacher``
    on ``train``; returns the per-epoch history. ``out`` holds checkpoint.pt, metrics.csv,
    config.json and, at the end, model.pt (the student, for export). Both models train on
    ``config.device`` (the teacher in eval mode, without gradients) and are on the CPU again after."""
    device = training_device(config.device, config.precision)  # an accelerator that is not here: refused before anything is written
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if (out / CHECKPOINT).exists() and not resume:
        raise CheckpointError(f"{out} already holds a checkpoint (a distillation, or another run such as a `hakd train` "
                              "teacher): choose another --out, or pass --resume to continue a distillation there")
    use_threads(config.threads)
    _check_pair(teacher, student)
    resolutions = match_stages(teacher, student) if config.loss == "kd+at" and config.beta > 0 else []
    if config.init == "reset" and not (out / CHECKPOINT).exists():
        reset_parameters(student, config.seed)
    teacher = with_stages(teacher, resolutions).eval().to(device)  # shares the teacher's and student's parameters
    model = with_stages(student, resolutions).to(device)
    run_id = {"config": config.identity(), "stages": [list(r) for r in resolutions], "train_data": train.fingerprint(),
              **(run_info or {})}
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, config.milestone_epochs(), config.lr_gamma)
    task = _Distill(teacher, student, config, test, out, run_id, optimizer)
    if (out / CHECKPOINT).exists():
        task.load_state(load_checkpoint(out / CHECKPOINT))
        print(f"resuming {out} after epoch {len(task.history)}/{config.epochs}")
    else:
        torch.manual_seed(config.seed)
    if is_writer():
        atomic_write_text(out / "config.json", json.dumps(run_id, indent=2, sort_keys=True))
    try:
        train_loop(model, optimizer, train.loader(config.batch_size, seed=config.seed, pin=device.type == "cuda"), task,
                   out / CHECKPOINT, epochs=config.epochs, scheduler=scheduler, resume=True, progress=progress,
                   precision=config.precision)
    finally:  # back where compiling, measuring and the caller's teacher live
        model.to("cpu"), teacher.to("cpu")
    if is_writer():
        save_checkpoint({"model": student, "input_shape": list(input_shape(student))}, out / STUDENT)
    return task.history
