"""The steady clock: a reference kernel, really compiled and timed here, guards every timing."""

import socket

import pytest

from hakd.cost import steady
from hakd.cost.measure import Measurement
from hakd.cost.profile import Profiler
from hakd.cost.steady import REFERENCE, SlowHostWarning, SteadyClock
from hakd.cost.table import LatencyTable


@pytest.fixture
def patience(monkeypatch):
    """A process of its own: no reference timed yet, and a short wait budget (the product's is PATIENCE_S)."""
    monkeypatch.setattr(steady, "_waited", {"s": 0.0})
    monkeypatch.setattr(steady, "_fastest", {})
    monkeypatch.setattr(steady, "PATIENCE_S", 0.3)


def test_the_baseline_is_kept_per_host_in_the_table_and_read_by_the_next_clock(tmp_path, patience):
    table = LatencyTable(tmp_path / "t.sqlite")
    clock = SteadyClock("host", table, every_s=0)
    clock.check()
    row = [r for r in table.rows() if r["signature"].startswith(REFERENCE)]
    assert len(row) == 1 and row[0]["signature"].endswith(socket.gethostname()) and row[0]["schedule"] == "steady"
    assert row[0]["latency_s"] == clock.baseline_s > 0
    assert SteadyClock("host", LatencyTable(tmp_path / "t.sqlite")).baseline_s <= row[0]["latency_s"]
    assert clock.slow_checks == 0 and clock.worst_ratio == 1.0


def test_a_host_slower_than_its_best_is_waited_for_then_timed_with_one_warning(patience):
    table = LatencyTable(":memory:")
    naps = []
    clock = SteadyClock("host", table, every_s=0, nap_s=0.1, sleep=naps.append)
    table.record(*clock.key, Measurement(clock.reference_s() / 100, 0.0))  # it once ran 100x faster: now it is "slow"
    with pytest.warns(SlowHostWarning, match=r"slower than its best .* another process"):
        clock.check()
    assert 2 <= len(naps) <= 4 and sum(naps) == pytest.approx(0.3)  # naps until the patience is spent
    assert clock.slow_checks == 1 and clock.worst_ratio > 20  # a load on this host moves it 2x at most
    clock.check()  # no patience left: timed at once, counted, not warned again
    assert clock.slow_checks == 2 and sum(naps) == pytest.approx(0.3)


def test_checks_are_spaced_and_the_profiler_checks_before_it_times(patience):
    clock = SteadyClock("host", LatencyTable(":memory:"), every_s=60)
    clock.check(), clock.check()
    assert clock.checks == 1
    prof = Profiler("host", table=LatencyTable(":memory:"))
    assert isinstance(prof.runner.steady, SteadyClock)
    prof.call_overhead()  # a timing: the reference is timed first
    assert prof.runner.steady.checks == 1 and prof.runner.steady.baseline_s > 0


def test_a_reference_that_cannot_be_timed_turns_the_clock_off_with_a_word(patience, monkeypatch):
    clock = SteadyClock("host", LatencyTable(":memory:"), every_s=0)
    tried = []
    monkeypatch.setattr(clock, "reference_s", lambda: tried.append(1) or 1 / 0)
    with pytest.warns(SlowHostWarning, match="could not be timed .*ZeroDivisionError"):
        clock.check()
    clock.check()
    assert tried == [1] and clock.slow_checks == 0
