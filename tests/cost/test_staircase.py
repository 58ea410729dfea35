import csv

import pytest

from hakd.cost.staircase import adaptive_sweep, full_sweep, optimal_points
from tests.conftest import REPO

PROBE = REPO / "tests" / "data" / "staircase-probe"  # recorded sweeps, kept in the project


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
    assert sorted(adaptive.latency) == [1, 8, 9, 16, 17, 24, 25, 32, 33, 40, 41, 48, 49, 56, 57, 64]  # a + 1 after each step


def test_steps_coarser_than_the_grid_cost_one_measurement_each():
    stairs = lambda w: 10.0 * ((w + 15) // 16)  # noqa: E731  a tile of 16, a grid of 8
    full, adaptive = full_sweep(stairs, 128), adaptive_sweep(stairs, 128, grid=8)
    assert adaptive.optimal == full.optimal == list(range(16, 129, 16))
    assert adaptive.evaluations == len(range(8, 129, 8)) + 1 + 7  # the grid with width 1, and a + 1 past 7 steps


def _probe(name):
    path = PROBE / name
    if not path.is_file():
        raise FileNotFoundError(f"recorded sweep {path} is missing from the checkout")
    return {int(r["cout"]): float(r["median_us"]) for r in csv.DictReader(open(path))}


@pytest.mark.parametrize("name", ["sweep_tvm_manual16_c64_32x32.csv", "sweep_tvm_manual8_c64_32x32.csv",
                                  "sweep_torch1_c64_32x32.csv"])
def test_adaptive_sweep_on_recorded_curves(name):
    """Real noisy curves: at most 60% of the measurements; it finds (within one channel) at least
    80% of the full sweep's optimal points (those it misses are optimal by margins within the
    noise: a wider width 4.2% slower, against a 4% tolerance), and the points it reports are
    real step ends."""
    curve = _probe(name)
    full, adaptive = full_sweep(curve.get, 128), adaptive_sweep(curve.get, 128, grid=8)
    assert adaptive.evaluations <= 0.6 * full.evaluations
    near = lambda p, points: any(abs(p - q) <= 1 for q in points)  # noqa: E731
    assert sum(near(p, adaptive.optimal) for p in full.optimal) >= 0.8 * len(full.optimal), (adaptive.optimal, full.optimal)
    assert sum(near(p, full.optimal) for p in adaptive.optimal) >= 0.85 * len(adaptive.optimal), (adaptive.optimal, full.optimal)
    assert 128 in adaptive.optimal


@pytest.mark.parametrize("curve, most", [
    (lambda w: 100.0 * ((w + 7) // 8) + 2.0 * ((w - 1) % 8), 0.5),  # a jump past each tile of 8, a gentle rise inside it
    (lambda w: 50.0 + 10.0 * w, 0.5),  # a ramp: steep (every width a step end) at small widths, gentle later
    (lambda w: 100.0 * ((w + 3) // 4), 0.8),  # steps finer than the grid: each one is found, at a price
], ids=["step-then-ramp", "ramp", "fine-steps"])
def test_adaptive_sweep_tells_ramps_from_steps(curve, most):
    full, adaptive = full_sweep(curve, 64), adaptive_sweep(curve, 64, grid=8)
    assert adaptive.optimal == full.optimal
    assert adaptive.evaluations <= most * full.evaluations


def test_a_load_spike_is_measured_again_not_refined_as_a_step():
    true = lambda w: 10.0 * ((w + 7) // 8)  # noqa: E731  steps of 8 channels
    spikes = {16: 2.0, 40: 1.8}  # the first measurement of these widths hit a load burst
    calls = []

    def measure(w):
        calls.append(w)
        return true(w) * (spikes.get(w, 1.0) if calls.count(w) == 1 else 1.0)

    fooled = adaptive_sweep(measure, 64, grid=8)
    calls.clear()
    settled = adaptive_sweep(measure, 64, grid=8, remeasure=measure)
    assert {16, 40} <= settled.remeasured  # (and the widths of each genuine step, measured again before refining)
    assert settled.optimal == list(range(8, 65, 8)) and settled.latency[16] == 20.0
    assert 16 not in fooled.optimal and 15 in fooled.optimal  # taken at face value, a spike moves a step end


def test_a_spike_on_a_ramp_is_measured_again_before_it_costs_a_refinement():
    true = lambda w: 50.0 + 10.0 * w  # noqa: E731  a ramp
    spikes = {12: 1.3, 44: 1.25, 9: 1.3}  # first measurements during a load burst: each breaks its interval's ramp test
    calls = []

    def measure(w):
        calls.append(w)
        return true(w) * (spikes.get(w, 1.0) if calls.count(w) == 1 else 1.0)

    clean = adaptive_sweep(true, 64, grid=8)
    fooled = adaptive_sweep(measure, 64, grid=8)
    calls.clear()
    settled = adaptive_sweep(measure, 64, grid=8, remeasure=measure)
    assert fooled.evaluations > clean.evaluations  # taken at face value, each spike is refined as a step
    assert settled.evaluations == clean.evaluations and settled.optimal == clean.optimal
    assert {12, 44} <= settled.remeasured


def test_a_burst_too_small_to_be_suspect_is_confirmed_away_at_the_end():
    true = lambda w: 100.0 if w <= 8 else 106.0  # noqa: E731  a 6% step past 8: 8 is a step end
    calls = []

    def measure(w):  # the first timing of width 8 fell in a 3% burst: within the tolerance, suspect to nothing
        calls.append(w)
        return true(w) * (1.03 if w == 8 and calls.count(w) == 1 else 1.0)

    fooled = adaptive_sweep(measure, 16, grid=8)
    assert fooled.optimal == [16]  # taken at face value, 8 costs as much as 16 within the tolerance
    calls.clear()
    confirmed = adaptive_sweep(measure, 16, grid=8, remeasure=measure)
    assert confirmed.optimal == [8, 16] and confirmed.latency[8] == 100.0
    assert confirmed.confirmed == set(confirmed.latency) and not confirmed.remeasured
    assert sorted(calls) == sorted(2 * list(confirmed.latency))  # each measured width once more, no other


def test_ramps_are_interpolated_between_the_confirmed_values():
    true = lambda w: 50.0 + 10.0 * w  # noqa: E731  a ramp: the widths inside each grid interval are estimated
    calls = []

    def measure(w):  # every first timing 2% slow: below the tolerance, nothing is suspect
        calls.append(w)
        return true(w) * (1.02 if calls.count(w) == 1 else 1.0)

    sweep = adaptive_sweep(measure, 32, grid=8, remeasure=measure)
    assert sweep.estimated and all(abs(v - true(w)) < 1e-9 for w, v in sweep.curve.items())
