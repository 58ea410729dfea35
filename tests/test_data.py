import gzip
import pickle

import numpy as np
import pytest
import torch

from hakd.config import DataConfig
from hakd.data import load
from hakd.errors import DataError
from tests.conftest import needs_fashion_mnist


@pytest.mark.data
@needs_fashion_mnist
def test_fashion_mnist_counts_shapes_labels(fashion_mnist):
    train, test = fashion_mnist
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert train.images.dtype == torch.uint8
    assert train.labels.min() == 0 and train.labels.max() == 9
    assert torch.bincount(train.labels).tolist() == [6000] * 10  # the published class balance
    assert torch.bincount(test.labels).tolist() == [1000] * 10


@pytest.mark.data
@needs_fashion_mnist
def test_fashion_mnist_pixel_statistics_match_published(fashion_mnist):
    pixels = fashion_mnist[0].images.double()
    assert pixels.mean().item() == pytest.approx(72.94, abs=0.01)
    assert pixels.std().item() == pytest.approx(90.02, abs=0.01)


@pytest.mark.data
@needs_fashion_mnist
def test_loader_normalises_and_is_seeded(fashion_mnist):
    train, test = fashion_mnist
    x, y = next(iter(test.loader(10000)))
    assert abs(x.mean().item()) < 0.1 and abs(x.std().item() - 1) < 0.1  # test split, train statistics
    a = train.loader(64, seed=3)
    b = train.loader(64, seed=3)
    a.set_epoch(2), b.set_epoch(2)
    (xa, ya), (xb, yb) = next(iter(a)), next(iter(b))
    assert torch.equal(xa, xb) and torch.equal(ya, yb)
    b.set_epoch(3)
    assert not torch.equal(ya, next(iter(b))[1])
    assert len(a) == 938 and sum(len(y) for _, y in a) == 60000


def test_augmentation_is_a_translation_or_flip():
    images = torch.arange(2 * 1 * 8 * 8, dtype=torch.uint8).view(2, 1, 8, 8)
    from hakd.data import Split

    split = Split(images, torch.tensor([0, 1]), (0.0,), (1.0,), augment=True)
    x, _ = next(iter(split.loader(2, seed=1)))
    assert x.shape == (2, 1, 8, 8)
    for img in x:  # every pixel is either zero padding or a source pixel
        assert set(img.flatten().tolist()) <= set(images.flatten().float().tolist()) | {0.0}


def test_limits_keep_the_first_images(tmp_path):
    root = _write_fake_idx(tmp_path, 30)
    train, test = load(DataConfig("fashion-mnist", root=str(root), limit_train=7, limit_test=5))
    assert len(train) == 7 and len(test) == 5


def _write_fake_idx(root, n):
    """IDX files in the real format, used to test the reader's error paths."""
    for prefix in ("train", "t10k"):
        with gzip.open(root / f"{prefix}-images-idx3-ubyte.gz", "wb") as f:
            f.write(b"\0\0\x08\x03" + np.array([n, 28, 28], ">u4").tobytes() + bytes(n * 28 * 28))
        with gzip.open(root / f"{prefix}-labels-idx1-ubyte.gz", "wb") as f:
            f.write(b"\0\0\x08\x01" + np.array([n], ">u4").tobytes() + bytes(i % 10 for i in range(n)))
    return root


def test_missing_root_says_where_to_put_data(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path}/nowhere.*apt-get install dataset-fashion-mnist"):
        load(DataConfig("fashion-mnist", root=str(tmp_path / "nowhere")))


def test_damaged_file_is_named(tmp_path):
    _write_fake_idx(tmp_path, 4)
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(b"not gzip at all")
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz"):
        load(DataConfig("fashion-mnist", root=str(tmp_path)))


def test_truncated_file_is_reported(tmp_path):
    _write_fake_idx(tmp_path, 4)
    with gzip.open(tmp_path / "train-images-idx3-ubyte.gz", "wb") as f:
        f.write(b"\0\0\x08\x03" + np.array([4, 28, 28], ">u4").tobytes() + bytes(100))
    with pytest.raises(DataError, match="truncated"):
        load(DataConfig("fashion-mnist", root=str(tmp_path)))


def _write_cifar(root, n_per_batch):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        batch = {b"data": rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8),
                 b"labels": list(rng.integers(0, 10, n_per_batch))}
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f)


def test_cifar10_reads_the_standard_python_format(tmp_path):
    _write_cifar(tmp_path, 6)
    train, test = load(DataConfig("cifar10", root=str(tmp_path)))
    assert train.images.shape == (30, 3, 32, 32) and test.images.shape == (6, 3, 32, 32)
    assert train.in_channels == 3 and train.mean == (125.3, 123.0, 113.9)


def test_cifar10_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(DataError, match="cifar-10-batches-py"):
        load(DataConfig("cifar10", root=str(tmp_path)))
    with pytest.raises(DataError, match="needs a data root"):
        load(DataConfig("cifar10"))


def test_cifar10_damaged_batch_is_named(tmp_path):
    _write_cifar(tmp_path, 2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").write_bytes(b"garbage")
    with pytest.raises(DataError, match="damaged CIFAR-10 file .*data_batch_3"):
        load(DataConfig("cifar10", root=str(tmp_path)))
