"""Where training runs: the device a training config names, and its mixed precision.

Training (the teacher, Fisher's fine-tuning, Deep Compression, distillation) runs where users
train: ``"auto"`` picks CUDA, then Apple's MPS, then the CPU; ``"cpu"``, ``"cuda"``, ``"cuda:N"``
and ``"mps"`` name one. Measuring and compiling never move: they run on the target. Mixed
precision is an option, off by default: ``"bf16"`` autocasts (CPU and CUDA), ``"fp16"``
autocasts with a gradient scaler (CUDA only)::

    >>> training_device("cpu")
    device(type='cpu')
    >>> training_device("tpu")
    Traceback (most recent call last):
    ...
    hakd.errors.ConfigError: the training device is "auto", "cpu", "cuda", "cuda:N" or "mps"; got 'tpu'
    >>> with autocast(torch.device("cpu"), "bf16"):
    ...     (torch.ones(2, 2) @ torch.ones(2, 2)).dtype
    torch.bfloat16
"""

from __future__ import annotations

import contextlib
import os
import re

import torch

from hakd.errors import ConfigError

__all__ = ["DEVICES", "PRECISIONS", "usable_cores", "check_device", "check_precision", "training_device", "autocast", "grad_scaler"]

DEVICES = ("auto", "cpu", "cuda", "cuda:N", "mps")
PRECISIONS = ("fp32", "bf16", "fp16")


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity where the OS tells it).

    >>> usable_cores() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def check_device(spec: str) -> None:
    """Refuse a device name that is none of :data:`DEVICES` (whether it is present is checked
    when training starts, by :func:`training_device`)."""
    if not isinstance(spec, str) or not re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", spec):
        raise ConfigError(f'the training device is "auto", "cpu", "cuda", "cuda:N" or "mps"; got {spec!r}')


def _mps() -> bool:
    return getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()


def training_device(spec: str = "auto", precision: str = "fp32") -> torch.device:
    """The torch device ``spec`` names on this machine; a ConfigError that says what is present
    when it names an accelerator this machine does not have, or when ``precision`` cannot train there."""
    check_device(spec)
    device = torch.device(spec if spec != "auto" else "cuda" if torch.cuda.is_available() else "mps" if _mps() else "cpu")
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(f"training device {spec!r}: this torch sees no CUDA device (torch {torch.__version__}, "
                              f"CUDA build: {torch.version.cuda or 'no'}); train on 'cpu', or install a CUDA build of torch")
        if device.index is None:  # under torchrun, each process its own: LOCAL_RANK
            device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
        if device.index >= count:
            raise ConfigError(f"training device {spec!r}: this machine has {count} CUDA device(s), cuda:0 to "
                              f"cuda:{count - 1}, and this process would take cuda:{device.index}")
    if device.type == "mps" and not _mps():
        raise ConfigError(f"training device {spec!r}: MPS is not available here (Apple silicon and a torch built "
                          "with it); train on 'cpu'")
    check_precision(precision, device)
    return device


def check_precision(precision: str, device: torch.device) -> None:
    if precision not in PRECISIONS:
        raise ConfigError(f"the training precision is one of {', '.join(PRECISIONS)}; got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise ConfigError(f"fp16 training (autocast with a gradient scaler) needs a CUDA device, not {device}; "
                          "use bf16 on the CPU")


def autocast(device: torch.device, precision: str):
    """The autocast context of ``precision`` on ``device`` (nothing for fp32)."""
    check_precision(precision, device)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


def grad_scaler(device: torch.device, precision: str):
    """A gradient scaler for fp16 (small gradients would underflow), else None."""
    check_precision(precision, device)
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None
