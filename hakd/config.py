"""Frozen, validated configuration dataclasses with a JSON round-trip.

Every config checks itself in ``__post_init__`` and raises :class:`ConfigError`
(a ``ValueError``) that names the option and its valid values::

    >>> TrainConfig(epochs=2).to_json() == TrainConfig.from_json(TrainConfig(epochs=2).to_json()).to_json()
    True
    >>> TrainConfig(epochs=0)
    Traceback (most recent call last):
    ...
    hakd.errors.ConfigError: TrainConfig.epochs must be >= 1, got 0
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any, Optional, Tuple

from hakd.errors import ConfigError

__all__ = ["run_identity", "DataConfig", "TrainConfig", "PruneConfig", "DistillConfig", "TrialConfig", "DATASETS", "PRUNE_TARGETS", "DISTILL_LOSSES", "INITS"]

DATASETS = ("fashion-mnist", "cifar10")


def _finite(cfg) -> None:
    """Every number of ``cfg`` (and in its tuples) is finite: ``nan < low`` is False, so a NaN
    passes every range check after it (a NaN learning rate trains a NaN model)."""
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        for v in value if isinstance(value, tuple) else (value,):
            if isinstance(v, float) and not math.isfinite(v):
                raise ConfigError(f"{type(cfg).__name__}.{f.name} must be a finite number, got {value!r}")


def _above(cfg, name: str, low) -> None:
    """``cfg.name`` is a number greater than ``low`` (a learning rate of 0 trains nothing)."""
    value = getattr(cfg, name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > low:
        raise ConfigError(f"{type(cfg).__name__}.{name} must be > {low}, got {value!r}")


def _at_least(cfg, name: str, low, allow_none: bool = False) -> None:
    value = getattr(cfg, name)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < low:
        raise ConfigError(f"{type(cfg).__name__}.{name} must be >= {low}, got {value!r}")
    if name in _INTEGERS and value != int(value):
        raise ConfigError(f"{type(cfg).__name__}.{name} is a whole number, got {value!r}")


MAX_BATCH = 65536
MAX_SEED = 2**32 - 1
MAX_THREADS = 1024  # more is a typo, and a native thread pool asked for 10**9 threads aborts the process


def _at_most(cfg, name: str, high, why: str = "") -> None:
    """``cfg.name`` (checked numeric by :func:`_at_least` first; None passes) is at most ``high``."""
    value = getattr(cfg, name)
    if value is not None and value > high:
        raise ConfigError(f"{type(cfg).__name__}.{name} must be at most {high}{why}, got {value!r}")


def _threads(cfg, name: str = "threads", allow_none: bool = False) -> None:
    """A thread count: a whole number in [1, MAX_THREADS]."""
    _at_least(cfg, name, 1, allow_none)
    _at_most(cfg, name, MAX_THREADS)


_INTEGERS = {"epochs", "batch_size", "seed", "threads", "prune_every", "max_steps", "limit_train", "limit_test", "images", "held_out"}


def _batch(cfg) -> None:
    """A batch size: a whole number in [1, MAX_BATCH] (a batch of every image of a data set does not fit in memory)."""
    _at_least(cfg, "batch_size", 1)
    _at_most(cfg, "batch_size", MAX_BATCH)


def _seed(cfg) -> None:
    """A random seed: a whole number in [0, 2**32 - 1] (what torch and numpy both take)."""
    _at_least(cfg, "seed", 0)
    _at_most(cfg, "seed", MAX_SEED, " (2**32 - 1)")


def _training_device(cfg) -> None:
    """``device`` names a training device (present or not: checked when training starts) and
    ``precision`` one of fp32, bf16, fp16."""
    from hakd.device import PRECISIONS, check_device

    try:
        check_device(cfg.device)
    except ConfigError as e:
        raise ConfigError(f"{type(cfg).__name__}.device: {e}") from None
    _one_of(cfg, "precision", PRECISIONS)


def _one_of(cfg, name: str, choices) -> None:
    value = getattr(cfg, name)
    if value not in choices:
        raise ConfigError(
            f"{type(cfg).__name__}.{name} is {value!r}; valid values: {', '.join(map(str, choices))}"
        )


def run_identity(options: dict) -> dict:
    """Of a config's options, those a run's results depend on: every option but ``threads`` and
    the training ``device`` (a run resumes with any), and ``precision`` unless it is mixed (so
    runs saved before it existed resume)::

        >>> run_identity({"lr": 0.1, "threads": 2, "device": "cuda", "precision": "fp32"})
        {'lr': 0.1}
    """
    return {k: v for k, v in options.items() if k not in ("threads", "device") and not (k == "precision" and v == "fp32")}


class _JsonConfig:
    """Mixin: ``to_dict``/``from_dict`` and JSON, rejecting unknown keys."""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    def identity(self) -> dict:
        """What a run's results depend on (:func:`run_identity` of its options)."""
        return run_identity(self.to_dict())

    @classmethod
    def from_dict(cls, data: dict[str, Any]):
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ConfigError(
                f"{cls.__name__} has no option(s) {unknown}; valid options: {', '.join(sorted(names))}"
            )
        values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
        return cls(**values)

    @classmethod
    def from_json(cls, text: str):
        return cls.from_dict(json.loads(text))


@dataclasses.dataclass(frozen=True)
class DataConfig(_JsonConfig):
    """Which data set to read, and from where.

    ``root=None`` means the default place: ``/usr/share/datasets/fashion-mnist`` for
    Fashion-MNIST (Debian's ``dataset-fashion-mnist``); CIFAR-10 always needs a root
    holding ``cifar-10-batches-py``. ``limit_train``/``limit_test`` keep the first N
    images of each split (for quick runs); ``None`` keeps all.

    Example: ``DataConfig("cifar10", root="~/data")``.
    """

    name: str = "fashion-mnist"
    root: Optional[str] = None
    augment: bool = True
    limit_train: Optional[int] = None
    limit_test: Optional[int] = None

    def __post_init__(self):
        _finite(self)
        _one_of(self, "name", DATASETS)
        _at_least(self, "limit_train", 1, allow_none=True)
        _at_least(self, "limit_test", 1, allow_none=True)


@dataclasses.dataclass(frozen=True)
class TrainConfig(_JsonConfig):
    """SGD training, the HAKD authors' recipe scaled to ``epochs``.

    The published schedule is 200 epochs with the learning rate times 0.2 at epochs
    60, 120 and 160; ``lr_milestones`` holds those as fractions of ``epochs``. ``device``: where
    it trains (``auto``: an accelerator when one is present, :mod:`hakd.device`); ``precision``:
    ``fp32``, or mixed ``bf16`` / ``fp16`` (CUDA). A run resumes on any device.

    Example: ``TrainConfig(epochs=10, threads=2)``, ``TrainConfig(epochs=200, device="cuda", precision="bf16")``.
    """

    epochs: int = 200
    batch_size: int = 128
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    lr_milestones: Tuple[float, ...] = (0.3, 0.6, 0.8)
    lr_gamma: float = 0.2
    seed: int = 0
    threads: Optional[int] = None
    device: str = "auto"
    precision: str = "fp32"

    def __post_init__(self):
        _finite(self)
        _training_device(self)
        _at_least(self, "epochs", 1)
        _batch(self)
        _above(self, "lr", 0.0)
        _at_least(self, "momentum", 0.0)
        _at_least(self, "weight_decay", 0.0)
        _at_least(self, "lr_gamma", 0.0)
        _seed(self)
        _threads(self, allow_none=True)
        if not all(0.0 < m < 1.0 for m in self.lr_milestones):
            raise ConfigError(
                f"TrainConfig.lr_milestones are fractions of the epochs in (0, 1), got {self.lr_milestones}"
            )

    def milestone_epochs(self) -> list[int]:
        """The epochs at which the learning rate drops, e.g. [60, 120, 160] for 200."""
        return sorted({e for e in (round(m * self.epochs) for m in self.lr_milestones) if 0 < e < self.epochs})


PRUNE_TARGETS = ("channels", "params", "macs", "latency")
PENALTIES = ("params", "latency")


@dataclasses.dataclass(frozen=True)
class PruneConfig(_JsonConfig):
    """Fisher pruning as the HAKD authors ran it (pytorch-prunes): fine-tune with SGD and
    remove the least salient channel every ``prune_every`` steps until the target holds.

    ``target`` and ``amount``: ``channels`` keeps ``amount`` prunable channels in all;
    ``params``/``macs`` keep that fraction of the model's parameters/MACs; ``latency``
    stops at ``amount`` seconds predicted by the cost model. ``penalty`` > 0 is the penalised
    variant: a channel's score is its saliency minus ``penalty`` times the share of the
    model's parameters (``penalty_on="params"``) or of its latency, read from the groups'
    staircases (``penalty_on="latency"``), that removing it saves. ``device``/``precision``: where
    the fine-tuning trains, as in :class:`TrainConfig`.

    Example: ``PruneConfig(target="params", amount=0.5, prune_every=100)``.
    """

    target: str = "params"
    amount: float = 0.5
    prune_every: int = 100
    batch_size: int = 128
    lr: float = 8e-4
    momentum: float = 0.9
    weight_decay: float = 5e-4
    penalty: float = 0.0
    penalty_on: str = "params"
    seed: int = 0
    threads: Optional[int] = None
    max_steps: Optional[int] = None
    device: str = "auto"
    precision: str = "fp32"

    def __post_init__(self):
        _finite(self)
        _one_of(self, "target", PRUNE_TARGETS)
        _one_of(self, "penalty_on", PENALTIES)
        if isinstance(self.amount, bool) or not isinstance(self.amount, (int, float)) or self.amount != self.amount:
            raise ConfigError(f"PruneConfig.amount must be a number, got {self.amount!r}")
        if self.target in ("params", "macs") and not 0.0 < self.amount < 1.0:
            raise ConfigError(f"PruneConfig.amount is the fraction of {self.target} to keep, in (0, 1); got {self.amount}")
        if self.target == "channels" and (self.amount < 1 or self.amount != int(self.amount)):
            raise ConfigError(f"PruneConfig.amount is the number of channels to keep (an integer >= 1); got {self.amount}")
        if self.target == "latency" and self.amount <= 0:
            raise ConfigError(f"PruneConfig.amount is a latency budget in seconds (> 0); got {self.amount}")
        _above(self, "lr", 0.0)
        _batch(self)
        for name, low in (("prune_every", 1), ("momentum", 0.0), ("weight_decay", 0.0),
                          ("penalty", 0.0)):
            _at_least(self, name, low)
        _seed(self)
        _threads(self, allow_none=True)
        _at_least(self, "max_steps", 1, allow_none=True)
        _training_device(self)


DISTILL_LOSSES = ("ce", "kd", "kd+at")
INITS = ("inherit", "reset")


@dataclasses.dataclass(frozen=True)
class DistillConfig(TrainConfig):
    """Distillation of a student from its teacher: the training recipe of :class:`TrainConfig`
    and the loss ``(1 - alpha) * CE + alpha * KD(T) + beta * AT`` (``loss="kd"``: no AT;
    ``"ce"``: plain cross-entropy, the baseline). ``init``: ``inherit`` keeps the weights the
    student was rebuilt with (the teacher's kept channels), ``reset`` starts from a fresh
    initialisation.

    Example: ``DistillConfig(epochs=30, init="inherit", threads=2)``.
    """

    temperature: float = 4.0
    alpha: float = 0.9
    beta: float = 1e3
    loss: str = "kd+at"
    init: str = "inherit"

    def __post_init__(self):
        _finite(self)
        super().__post_init__()
        _one_of(self, "loss", DISTILL_LOSSES)
        _one_of(self, "init", INITS)
        _at_least(self, "beta", 0.0)
        if isinstance(self.temperature, bool) or not isinstance(self.temperature, (int, float)) or self.temperature <= 0:
            raise ConfigError(f"DistillConfig.temperature must be > 0, got {self.temperature!r}")
        if isinstance(self.alpha, bool) or not isinstance(self.alpha, (int, float)) or not 0 <= self.alpha <= 1:
            raise ConfigError(f"DistillConfig.alpha is the weight of KD against cross-entropy, in [0, 1]; got {self.alpha!r}")


@dataclasses.dataclass(frozen=True)
class TrialConfig(_JsonConfig):
    """How :func:`hakd.optimize` chooses between ways of spending a latency budget (several
    ``value`` or ``min_keep``): each way's student is distilled for one epoch over the first
    ``images`` training images, and the one most accurate on the last ``held_out`` training
    images (which no trial trains on; the test split is never used to choose) is the student.

    Example: ``TrialConfig(images=10000, held_out=5000)``.
    """

    images: int = 10000
    held_out: int = 5000

    def __post_init__(self):
        _finite(self)
        _at_least(self, "images", 1)
        _at_least(self, "held_out", 1)
