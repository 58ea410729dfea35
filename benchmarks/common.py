"""Helpers shared by the benchmark scripts."""

import csv
from pathlib import Path

import torch

from hakd import models

RESULTS = Path(__file__).parent / "results"


def write_csv(name: str, rows: list) -> Path:
    """Write ``rows`` (dicts with the same keys) to results/NAME and say so."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}", flush=True)
    return path


def merge_rows(name: str, rows: list, key: str = "model") -> list:
    """``rows`` after the rows of results/NAME whose ``key`` none of ``rows`` has: a run on some
    models updates their rows and keeps the others'."""
    path = RESULTS / name
    if not path.is_file():
        return rows
    with open(path, newline="") as f:
        mine = {r[key] for r in rows}
        return [r for r in csv.DictReader(f) if r[key] not in mine] + rows


def calibrated(name: str, shape=(1, 3, 32, 32)):
    """A zoo model in eval mode whose BatchNorm statistics come from 3 forward passes on random
    batches, so its activations (and comparisons between backends) are not degenerate."""
    torch.manual_seed(0)
    model = models.create(name, in_channels=shape[1]).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape[1:]))
    return model.eval()
