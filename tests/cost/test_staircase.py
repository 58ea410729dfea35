import csv

import pytest

from hakd.cost.staircase import adaptive_sweep, full_sweep, optimal_points
from tests.conftest import REPO

PROBE = REPO.parent / "shared" / "data" / "staircase-probe"


def test_optimal_points_are_step_ends():
    curve = {1: 5.0, 2: 5.1, 3: 5.05, 4: 9.0, 5: 9.1, 6: 9.0, 7: 14.0, 8: 12.0}
    assert optimal_points(curve, tol=0.03) == [3, 6, 8]  # 7 is slower than 8: not optimal
    assert optimal_points({1: 1.0}, tol=0.03) == [1]
    assert optimal_points(curve, tol=10.0) == [8]  # everything within tolerance: only the widest


def test_adaptive_sweep_on_an_exact_staircase_finds_every_step_end():
    def stairs(w):  # tiles of 8 with a tail penalty, like a tiled schedule
        return 10.0 * ((w + 7) // 8) + (0.5 if w % 8 else 0.0)

    full, adaptive = full_sweep(stairs, 64), adaptive_sweep(stairs, 64, grid=8)
    assert adaptive.optimal == full.optimal == [8, 16, 24, 32, 40, 48, 56, 64]
    assert adaptive.evaluations < full.evaluations / 2


def _probe(name):
    path = PROBE / name
    if not path.is_file():
        pytest.skip(f"recorded sweep {path} not available")
    return {int(r["cout"]): float(r["median_us"]) for r in csv.DictReader(open(path))}


@pytest.mark.parametrize("name", ["sweep_tvm_manual16_c64_32x32.csv", "sweep_tvm_manual8_c64_32x32.csv",
                                  "sweep_torch1_c64_32x32.csv"])
def test_adaptive_sweep_on_recorded_curves(name):
    """Real noisy curves: half the measurements or fewer, and the points it reports are real step ends."""
    curve = _probe(name)
    full, adaptive = full_sweep(curve.get, 128), adaptive_sweep(curve.get, 128, grid=8)
    assert adaptive.evaluations <= 0.5 * full.evaluations
    found = [p for p in adaptive.optimal if any(abs(p - q) <= 1 for q in full.optimal)]
    assert len(found) >= 0.85 * len(adaptive.optimal), (adaptive.optimal, full.optimal)
    assert 128 in adaptive.optimal
