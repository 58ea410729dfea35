"""Staircases as data: JSON round trip, damaged files, another model, stale neighbours."""

import pytest

from hakd.errors import StaircaseError
from hakd.plan import PrunePlan
from hakd.staircases import GroupStaircase, Staircases


def stairs():
    a = GroupStaircase("a", 16, 9, 0.04, {1: 1e-6, 8: 1e-6, 9: 2e-6, 16: 2e-6}, (8, 16), {"b": 4}, {10: 2e-6})
    return Staircases({"a": 16, "b": 8}, "llvm -mcpu=znver3", 1, "reuse-1MiB", {"a": a})


def test_round_trip_and_file(tmp_path):
    s = stairs()
    assert Staircases.from_json(s.to_json()) == s
    s.save(tmp_path / "s.json")
    plan = PrunePlan.from_widths({"a": 9, "b": 4}, {"a": 16, "b": 8})
    assert Staircases.load(tmp_path / "s.json", plan) == s


def test_latency_between_known_widths_is_the_next_wider_one():
    st = stairs()["a"]
    assert st.at(4) == 1e-6 and st.at(10) == 2e-6 and st.at(12) == 2e-6
    with pytest.raises(StaircaseError, match="no latency for width 17"):
        st.at(17)


def test_bad_files_and_mismatches_are_clear(tmp_path):
    with pytest.raises(StaircaseError, match="no staircases file"):
        Staircases.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(StaircaseError, match="not valid JSON"):
        Staircases.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"format": "hakd.plan/1"}')
    with pytest.raises(StaircaseError, match="not a hakd staircases file"):
        Staircases.load(tmp_path / "other.json")
    (tmp_path / "cut.json").write_text('{"format": "hakd.staircases/1", "groups": {}}')
    with pytest.raises(StaircaseError, match="damaged"):
        Staircases.load(tmp_path / "cut.json")
    s = stairs()
    with pytest.raises(StaircaseError, match="another model"):
        s.check_plan(PrunePlan.from_widths({"a": 9}, {"a": 16, "b": 8, "c": 2}))
    moved = PrunePlan.from_widths({"a": 9, "b": 6}, {"a": 16, "b": 8})
    assert s.stale_groups(moved.pruned_widths()) == ["a"]
    with pytest.raises(StaircaseError, match="b 4->6"):
        s.check_plan(moved)
    with pytest.raises(StaircaseError, match="every optimal width must have a latency"):
        GroupStaircase("a", 16, 9, 0.04, {1: 1e-6}, (8,), {})
