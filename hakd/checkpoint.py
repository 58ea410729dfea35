"""Crash-safe files: atomic writes, checkpoint loading with clear errors, and user paths.

A write goes to a temporary file in the same folder, is flushed to disk, then
renamed over the target, so a killed process leaves either the old file or the
new one, never half of one::

    save_checkpoint({"epoch": 3}, Path(tmp) / "ckpt.pt")
    load_checkpoint(Path(tmp) / "ckpt.pt")["epoch"]   # 3
"""

from __future__ import annotations

import os
import pickle
import tempfile
import zipfile
from pathlib import Path
from typing import Any, Callable

import torch

from hakd.errors import CheckpointError

__all__ = ["atomic_write", "atomic_write_text", "save_checkpoint", "load_checkpoint", "expand_user"]


def expand_user(path) -> Path:
    """``path`` with a leading ``~`` or ``~user`` expanded, as a shell does: left as it is when
    there is no such user or no home (pathlib raises there).

    >>> expand_user("~0/t.sqlite") == Path("~0/t.sqlite"), expand_user("t.sqlite")
    (True, PosixPath('t.sqlite'))
    """
    try:
        return Path(path).expanduser()
    except RuntimeError:
        return Path(path)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _umask()


def atomic_write(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write(file)`` on a temporary file, then rename it to ``path`` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files: give them the user's usual mode
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write(path, lambda f: f.write(text.encode()))


def save_checkpoint(state: dict, path: Path) -> None:
    """Save a dict of tensors and plain values atomically."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path: Path) -> dict:
    """Load a checkpoint; a missing or damaged file raises CheckpointError naming it."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}: check the path (a run folder holds it once its first epoch "
                              "or step is saved)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, ValueError, OSError) as e:
        raise CheckpointError(
            f"{path} cannot be read as a torch checkpoint ({type(e).__name__}: {str(e)[:200]}); if hakd wrote it, it is "
            "damaged: restore it from a copy, or start the run again in another folder"
        ) from e
    if not isinstance(state, dict):
        raise CheckpointError(f"{path} is not a hakd checkpoint (it holds a {type(state).__name__})")
    return state
