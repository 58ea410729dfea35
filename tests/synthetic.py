"""Small synthetic data in the real format, importable without the cost model (so without TVM):
tests/distill_worker.py runs under torchrun from it (see there why TVM must stay out)."""

import torch

from hakd.data import Split


def band_split(n=64, seed=0):
    """A small learnable task in the real data format: the label is the bright band's row."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, 4, (n,), generator=g)
    images = torch.randint(0, 60, (n, 1, 8, 8), generator=g, dtype=torch.uint8)
    for i, y in enumerate(labels):
        images[i, :, 2 * y: 2 * y + 2] += 180
    return Split(images, labels, (60.0,), (60.0,), augment=False, num_classes=4)
