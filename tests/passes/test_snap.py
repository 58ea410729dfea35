"""Snap on exact staircases: up, down, nearest, ties, optimal widths, width-1 groups, bad input."""

import numpy as np
import pytest

from hakd.errors import ConfigError, PlanError, StaircaseError
from hakd.passes.snap import resize, round_to_multiple, snap, snap_width
from hakd.plan import PrunePlan
from hakd.staircases import GroupStaircase, Staircases, tile_staircase


def exact(full, tile=8, neighbours=None):
    """An exact staircase of ``tile`` channels per step, 10 us a step."""
    latency = {w: 10e-6 * -(-w // tile) for w in range(1, full + 1)}
    optimal = [w for w in latency if w == full or w % tile == 0]
    return GroupStaircase("g", full, full, 0.04, latency, tuple(optimal), neighbours or {})


@pytest.mark.parametrize("width,up,down,nearest", [
    (9, 16, 8, 8),      # just past a step: down saves a step for one channel
    (15, 16, 8, 16),    # just short of a step end: up is free capacity
    (12, 16, 8, 16),    # a tie in channels goes up
    (16, 16, 16, 16),   # already optimal: every mode keeps it
    (3, 8, 8, 8),       # inside the first step: nothing narrower is faster
    (26, 30, 24, 24),   # the last, partial step ends at the full width
])
def test_modes_on_an_exact_staircase(width, up, down, nearest):
    st = exact(30)
    assert (snap_width(st, width, "up"), snap_width(st, width, "down"), snap_width(st, width, "nearest")) == (up, down, nearest)


def test_up_never_buys_capacity_with_latency():
    # a creeping curve (3% a channel, under the 4% tolerance): no wider width is as fast as 10
    latency = {w: 1e-5 * 1.03 ** w for w in range(1, 21)}
    st = GroupStaircase("g", 20, 20, 0.04, latency, (20,), {})
    assert [snap_width(st, 10, m) for m in ("up", "down", "nearest")] == [10, 10, 10]


def test_sawtooth_up_jumps_to_a_faster_wider_width():
    latency = {**{w: 10e-6 for w in range(1, 9)}, **{w: 30e-6 for w in range(9, 16)}, 16: 20e-6}
    st = GroupStaircase("g", 16, 16, 0.04, latency, (8, 16), {})
    assert snap_width(st, 12, "up") == 16  # 63 slower than 64: more channels and less time
    assert snap_width(st, 12, "down") == 8


def test_a_group_of_width_one_stays():
    st = GroupStaircase("g", 1, 1, 0.04, {1: 1e-6}, (1,), {})
    assert [snap_width(st, 1, m) for m in ("up", "down", "nearest")] == [1, 1, 1]


def test_snap_restores_the_most_important_and_drops_the_least_important():
    importance = {"g": np.array([5.0, 1.0, 7.0, 3.0, 9.0, 2.0, 8.0, 4.0, 6.0, 0.5, 0.1, 0.2, 0.3, 0.4, 0.6, 10.0])}
    plan = PrunePlan({"g": (0, 1, 2, 3, 4, 5, 6, 7, 8)}, {"g": 16})  # 9 kept: just past the step at 8
    stairs = {"g": exact(16)}
    down = snap(plan, stairs, importance, "down")
    assert down.keep["g"] == (0, 2, 3, 4, 5, 6, 7, 8)  # channel 1 (1.0) was the least important kept
    up = snap(plan, stairs, importance, "up")
    assert up.width("g") == 16 and set(plan.keep["g"]) <= set(up.keep.get("g", range(16)))


def test_resize_breaks_ties_by_position():
    assert resize((0, 1, 2, 3), 2, np.ones(4)) == (0, 1)
    assert resize((0,), 3, np.ones(4)) == (0, 1, 2)


def test_round_to_multiple_is_snap_on_a_tile_staircase():
    st = tile_staircase("g", 20, 8)
    assert st.optimal == (8, 16, 20)
    assert [snap_width(st, w, "down") for w in (5, 16, 18, 20)] == [8, 16, 16, 20]
    assert [snap_width(st, w, "up") for w in (5, 9, 18)] == [8, 16, 20]


def test_bad_input_is_a_clear_error():
    plan = PrunePlan.from_widths({"g": 9}, {"g": 16})
    with pytest.raises(ConfigError, match="valid values: up, down, nearest"):
        snap(plan, {"g": exact(16)}, {"g": np.ones(16)}, "sideways")
    with pytest.raises(PlanError, match="no channel importance for group 'g'"):
        snap(plan, {"g": exact(16)}, {}, "up")
    with pytest.raises(PlanError, match="has 3 scores"):
        snap(plan, {"g": exact(16)}, {"g": np.ones(3)}, "up")
    other = Staircases({"g": 32}, "llvm", 1, "warm", {"g": exact(16)})
    with pytest.raises(StaircaseError, match="another model"):
        snap(plan, other, {"g": np.ones(16)}, "up")
    stale = Staircases({"g": 16, "h": 4}, "llvm", 1, "warm", {"g": exact(16, neighbours={"h": 4})})
    two = PrunePlan.from_widths({"g": 9, "h": 2}, {"g": 16, "h": 4})
    with pytest.raises(StaircaseError, match=r"stale for this plan.*h 4->2"):
        snap(two, stale, {"g": np.ones(16)}, "up")


def test_a_group_in_slices_snaps_and_rounds_the_same_number_of_channels_in_each_slice():
    plan = PrunePlan({"g": (0, 1, 2, 8, 9, 10)}, {"g": 16}, slices={"g": 2})
    importance = {"g": np.array([5, 4, 3, 2, 9, 1, 1, 1, 5, 4, 3, 2, 1, 1, 1, 8.0])}
    up = snap(plan, {"g": tile_staircase("g", 16, 4)}, importance, "up")
    assert up.keep["g"] == (0, 1, 2, 4, 8, 9, 10, 15)  # each slice gets back its own most important channel
    down = snap(plan, {"g": tile_staircase("g", 16, 4)}, importance, "down")
    assert down.keep["g"] == (0, 1, 8, 9) and down.slices == {"g": 2}



def test_rounding_a_group_in_slices_rounds_to_a_multiple_of_both():
    import torch

    from hakd.passes.groups import find_groups
    from hakd.passes.trace import trace
    from tests.passes.tv_models import TV_MODELS

    groups = find_groups(trace(TV_MODELS["regnet_x_tiny"](), torch.zeros(1, 3, 32, 32)))
    g = "trunk.0.f.0.0"  # 24 channels in 3 slices (group width 8)
    importance = {x.name: np.arange(float(x.width)) for x in groups.prunable()}
    rounded = round_to_multiple(groups.plan({g: 9}), groups, importance, 8, "down")
    assert groups[g].slices == 3 and rounded.width(g) == 24  # lcm(8, 3) = 24: nothing narrower is allowed
    assert round_to_multiple(groups.plan({g: 9}), groups, importance, 3, "down").width(g) == 9
