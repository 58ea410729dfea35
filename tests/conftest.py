"""Shared fixtures: the real Fashion-MNIST files (skipped with the reason when absent)."""

from pathlib import Path

import pytest

from hakd.data import FASHION_MNIST_ROOT
from tests.synthetic import band_split  # noqa: F401  (the tests import it from here)

REPO = Path(__file__).resolve().parents[1]


def fashion_mnist_available() -> bool:
    return (Path(FASHION_MNIST_ROOT) / "t10k-labels-idx1-ubyte.gz").is_file()


needs_fashion_mnist = pytest.mark.skipif(
    not fashion_mnist_available(),
    reason=f"real Fashion-MNIST not in {FASHION_MNIST_ROOT}: run scripts/setup.sh as root (apt-get install dataset-fashion-mnist)",
)


@pytest.fixture(scope="session")
def fashion_mnist():
    """The real (train, test) splits, read once per session."""
    if not fashion_mnist_available():
        pytest.skip(f"real Fashion-MNIST not in {FASHION_MNIST_ROOT}")
    from hakd.config import DataConfig
    from hakd.data import load

    return load(DataConfig("fashion-mnist"))


from tests.cost.conftest import tiny  # noqa: E402,F401  (a fixture for the tests of hakd/sweep.py and hakd/budget.py too)
