"""The budget allocator's knapsack against brute force, its bound, and its errors."""

import itertools

import numpy as np
import pytest

from hakd.errors import BudgetError, ConfigError
from hakd.passes.allocate import allocate, allowed_widths, budget_options
from hakd.plan import PrunePlan
from hakd.staircases import GroupStaircase


def random_options(rng, groups, per_group):
    """Staircase-like options: wider is slower and worth more; latencies in whole microseconds."""
    out = {}
    for g in range(groups):
        widths = sorted(rng.choice(np.arange(1, 64), per_group, replace=False).tolist())
        latency = np.cumsum(rng.integers(1, 20, per_group)) * 1e-6
        value = np.cumsum(rng.random(per_group))
        out[f"g{g}"] = [(w, float(s), float(v)) for w, s, v in zip(widths, latency, value)]
    return out


def brute_force(options, capacity):
    best = None
    for choice in itertools.product(*options.values()):
        latency, value = sum(o[1] for o in choice), sum(o[2] for o in choice)
        if latency <= capacity + 1e-12 and (best is None or value > best[0] + 1e-12):
            best = (value, latency)
    return best


@pytest.mark.parametrize("seed", range(12))
def test_equals_brute_force_on_small_random_staircases(seed):
    rng = np.random.default_rng(seed)
    options = random_options(rng, groups=int(rng.integers(2, 5)), per_group=int(rng.integers(2, 5)))
    least = sum(min(o[1] for o in opts) for opts in options.values())
    most = sum(max(o[1] for o in opts) for opts in options.values())
    capacity = round(float(rng.uniform(least, most)) * 1e6) * 1e-6  # whole microseconds
    bins = round(capacity * 1e6) * 8  # a grid of 1/8 us: every latency is a whole number of steps
    alloc = allocate(options, capacity, bins)
    value, _ = brute_force(options, capacity)
    assert alloc.value == pytest.approx(value)
    assert alloc.latency_s <= capacity + 1e-12
    chosen = {g: next(o for o in options[g] if o[0] == w) for g, w in alloc.widths.items()}
    assert sum(o[2] for o in chosen.values()) == pytest.approx(alloc.value)


@pytest.mark.parametrize("seed", range(6))
def test_on_a_coarse_grid_it_fits_and_beats_every_allocation_within_the_bound(seed):
    rng = np.random.default_rng(100 + seed)
    options = random_options(rng, groups=4, per_group=4)
    least = sum(min(o[1] for o in opts) for opts in options.values())
    capacity = least * 1.8
    alloc = allocate(options, capacity, bins=50)
    assert alloc.latency_s <= capacity
    bound = brute_force(options, capacity - len(options) * alloc.grid_s)
    if bound is not None:
        assert alloc.value >= bound[0] - 1e-9


def test_an_unreachable_capacity_states_the_least_reachable():
    options = {"a": [(8, 2e-6, 1.0)], "b": [(8, 3e-6, 1.0), (16, 4e-6, 2.0)]}
    with pytest.raises(BudgetError, match="adds up to 5.0 us"):
        allocate(options, 4e-6)


def test_options_value_the_channels_snapping_would_keep():
    st = GroupStaircase("g", 4, 2, 0.04, {1: 1e-6, 2: 2e-6, 3: 3e-6, 4: 4e-6}, (1, 2, 3, 4), {})
    plan = PrunePlan({"g": (0, 1)}, {"g": 4})
    importance = {"g": np.array([1.0, 2.0, 8.0, 4.0])}
    options = budget_options(plan, {"g": st}, importance)["g"]
    assert [v for _, _, v in options] == [2.0, 3.0, 11.0, 15.0]  # keeps 1; keeps 0,1; adds 2 (8.0); adds 3
    params = budget_options(plan, {"g": st}, importance, "params", {"g": 10.0})["g"]
    assert [v for _, _, v in params] == [10.0, 20.0, 30.0, 40.0]


def test_min_keep_offers_only_the_optimal_widths_at_or_above_the_floor():
    st = GroupStaircase("g", 16, 8, 0.04, {w: 1e-6 * (1 + (w - 1) // 4) for w in range(1, 17)}, (4, 8, 12, 16), {})
    plan = PrunePlan.from_widths({"g": 8}, {"g": 16})
    floored = budget_options(plan, {"g": st}, {"g": np.arange(16.0)}, min_keep=0.5)["g"]
    assert [w for w, _, _ in floored] == [8, 12, 16]
    assert allowed_widths(st, 0.3) == [8, 12, 16]  # 0.3 of 16 is 4.8: at least 5 channels
    assert allowed_widths(st, 0.3, slices=4) == [8, 12, 16] and allowed_widths(st, 0.0, slices=4) == [4, 8, 12, 16]
    assert allowed_widths(st, 1.0) == [16]
    for bad in (-0.1, 1.5, True, "half"):
        with pytest.raises(ConfigError, match="min_keep"):
            allowed_widths(st, bad)
