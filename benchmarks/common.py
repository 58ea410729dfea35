"""Helpers shared by the benchmark scripts."""

import csv
from pathlib import Path

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
