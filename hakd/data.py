"""Real image data sets, read from local files only: Fashion-MNIST and CIFAR-10.

Each split is held in memory as a uint8 tensor; :class:`Loader` yields seeded,
normalised, optionally augmented float batches (4-pixel pad + random crop +
horizontal flip, the recipe of the HAKD authors)::

    train, test = load(DataConfig("fashion-mnist"))
    len(train.images), train.num_classes               # (60000, 10)
    x, y = next(iter(train.loader(batch_size=128, seed=0)))
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
import pickle
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

from hakd.checkpoint import expand_user
from hakd.config import DataConfig
from hakd.errors import DataError

__all__ = ["Split", "Loader", "load", "FASHION_MNIST_ROOT", "read_idx"]

FASHION_MNIST_ROOT = "/usr/share/datasets/fashion-mnist"
FASHION_HOWTO = (
    "install Debian's package with `apt-get install dataset-fashion-mnist` (it puts the IDX files in "
    f"{FASHION_MNIST_ROOT}), or pass a root holding train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
    "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz"
)
CIFAR_HOWTO = (
    "CIFAR-10 cannot be downloaded here: copy the python version (folder cifar-10-batches-py with "
    "data_batch_1..5 and test_batch) into the root you pass, e.g. --data-root ~/data"
)
# Per-channel mean and std on the 0-255 scale, from the training splits.
STATS = {
    "fashion-mnist": ((72.94,), (90.02,)),
    "cifar10": ((125.3, 123.0, 113.9), (63.0, 62.1, 66.7)),
}


@dataclass
class Split:
    """One split of a data set: ``images`` uint8 (N, C, H, W), ``labels`` int64 (N,)."""

    images: torch.Tensor
    labels: torch.Tensor
    mean: Tuple[float, ...]
    std: Tuple[float, ...]
    augment: bool
    num_classes: int = 10

    @property
    def in_channels(self) -> int:
        return self.images.shape[1]

    def __len__(self) -> int:
        return len(self.labels)

    def fingerprint(self) -> dict:
        """What identifies this split in a run's identity (a resume on other data is refused):
        its size, image shape, augmentation and a digest of its images and labels.

        >>> s = Split(torch.zeros(4, 1, 2, 2, dtype=torch.uint8), torch.arange(4), (0.5,), (0.25,), True)
        >>> f = s.fingerprint(); (f["images"], f["shape"], f["augment"], len(f["digest"]))
        (4, [1, 2, 2], True, 32)
        >>> Split(s.images, s.labels.flip(0), s.mean, s.std, True).fingerprint() == f
        False
        """
        digest = hashlib.blake2b(digest_size=16)
        for t in (self.images, self.labels):
            digest.update(t.contiguous().numpy().tobytes())
        return {"images": len(self), "shape": list(self.images.shape[1:]), "augment": self.augment,
                "digest": digest.hexdigest()}

    def loader(self, batch_size: int, seed: int = 0, shuffle: Optional[bool] = None, pin: bool = False) -> "Loader":
        """Batches of this split; shuffled and augmented when the split is a training split.
        ``pin``: in page-locked memory, so that copies to a CUDA device overlap the step."""
        return Loader(self, batch_size, seed, self.augment if shuffle is None else shuffle, pin)


class Loader:
    """Iterates (images, labels) float batches; the order depends only on ``seed`` and ``epoch``."""

    def __init__(self, split: Split, batch_size: int, seed: int, train: bool, pin: bool = False):
        self.split, self.batch_size, self.seed, self.train, self.pin = split, batch_size, seed, train, pin
        self.epoch = 0
        self._mean = torch.tensor(split.mean).view(1, -1, 1, 1)
        self._std = torch.tensor(split.std).view(1, -1, 1, 1)

    def __len__(self) -> int:
        return -(-len(self.split) // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Select the shuffle and augmentation of ``epoch`` (so a resumed run sees the same batches)."""
        self.epoch = epoch

    def __iter__(self) -> Iterator[Tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.split)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch)
        order = torch.randperm(n, generator=gen) if self.train else torch.arange(n)
        for start in range(0, n, self.batch_size):
            idx = order[start : start + self.batch_size]
            x = self.split.images[idx].float()
            if self.train and self.split.augment:
                x = _pad_crop_flip(x, gen)
            x, y = (x - self._mean) / self._std, self.split.labels[idx]
            yield (x.pin_memory(), y.pin_memory()) if self.pin else (x, y)


def _pad_crop_flip(x: torch.Tensor, gen: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random ``pad``-pixel translation (zero padding) and horizontal flip, per image."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    flip = torch.rand(n, generator=gen) < 0.5
    rows = (dy[:, None] + torch.arange(h)[None])[:, None, :, None]
    cols = dx[:, None] + torch.arange(w)[None]
    cols = torch.where(flip[:, None], cols.flip(1), cols)[:, None, None, :]
    return padded[torch.arange(n)[:, None, None, None], torch.arange(c)[None, :, None, None], rows, cols]


def read_idx(path: Path) -> np.ndarray:
    """Read one gzipped IDX file (the MNIST format) into a numpy array, checking its header."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError as e:
        raise DataError(f"missing data file {path}; {FASHION_HOWTO}") from e
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"cannot read {path} (damaged or not gzip: {e}); reinstall it: {FASHION_HOWTO}") from e
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] != 0x08:
        raise DataError(f"{path} is not an IDX file of unsigned bytes; {FASHION_HOWTO}")
    ndim = data[3]
    dims = struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim])
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DataError(f"{path} is truncated: header says {dims}, found {body.size} values; {FASHION_HOWTO}")
    return body.reshape(dims)


def _fashion_mnist(root: Path, prefix: str) -> Tuple[torch.Tensor, torch.Tensor]:
    images = read_idx(root / f"{prefix}-images-idx3-ubyte.gz")
    labels = read_idx(root / f"{prefix}-labels-idx1-ubyte.gz")
    if len(images) != len(labels):
        raise DataError(f"{root}: {len(images)} {prefix} images but {len(labels)} labels; {FASHION_HOWTO}")
    if labels.size and labels.max() > 9:
        raise DataError(f"{root}/{prefix}-labels-idx1-ubyte.gz holds label {int(labels.max())}: Fashion-MNIST has "
                        f"classes 0..9; the file is not Fashion-MNIST's: {FASHION_HOWTO}")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def _cifar10(root: Path, files: list) -> Tuple[torch.Tensor, torch.Tensor]:
    folder = root / "cifar-10-batches-py" if (root / "cifar-10-batches-py").is_dir() else root
    images, labels = [], []
    for name in files:
        path = folder / name
        try:
            with open(path, "rb") as f:
                batch = pickle.load(f, encoding="bytes")
            images.append(np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            labels.append(np.asarray(batch[b"labels"], dtype=np.int64))
        except FileNotFoundError as e:
            raise DataError(f"missing CIFAR-10 file {path}; {CIFAR_HOWTO}") from e
        except (pickle.UnpicklingError, EOFError, KeyError, ValueError, TypeError) as e:
            raise DataError(f"damaged CIFAR-10 file {path} ({type(e).__name__}: {e}); {CIFAR_HOWTO}") from e
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def load(config: DataConfig = DataConfig()) -> Tuple[Split, Split]:
    """The (train, test) splits of ``config.name``, read from ``config.root``."""
    if config.name == "fashion-mnist":
        root = expand_user(config.root or FASHION_MNIST_ROOT)
        if not root.is_dir():
            raise DataError(f"Fashion-MNIST folder {root} does not exist; {FASHION_HOWTO}")
        train, test = _fashion_mnist(root, "train"), _fashion_mnist(root, "t10k")
    else:
        if config.root is None:
            raise DataError(f"CIFAR-10 needs a data root; {CIFAR_HOWTO}")
        root = expand_user(config.root)
        train = _cifar10(root, [f"data_batch_{i}" for i in range(1, 6)])
        test = _cifar10(root, ["test_batch"])
    mean, std = STATS[config.name]
    limits = (config.limit_train, config.limit_test)
    return tuple(
        Split(images[:limit], labels[:limit], mean, std, augment=config.augment and is_train)
        for (images, labels), limit, is_train in zip((train, test), limits, (True, False))
    )
