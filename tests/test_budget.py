"""Staircases of a pruned model, snapping and the latency budget on a real small model, with TVM."""

import numpy as np
import pytest

from hakd.budget import fastest_plan, fit_budget, fit_uniform
from hakd.cost.profile import Profiler
from hakd.cost.table import LatencyTable
from hakd.errors import BudgetError, StaircaseError
from hakd.passes.snap import snap
from hakd.passes.uniform import uniform_steps, uniform_widths
from hakd.plan import PrunePlan
from hakd.staircases import Staircases
from hakd.sweep import model_staircases, neighbours, predict
from tests.cost.conftest import QUICK

pytestmark = pytest.mark.slow


def importance(groups):
    rng = np.random.default_rng(0)
    return {g.name: rng.random(g.width) for g in groups.prunable()}


def test_staircases_of_a_pruned_model_are_measured_around_it_saved_and_resumed(tiny, tmp_path):
    gm, groups = tiny
    plan = PrunePlan.from_widths({"stem.0": 11, "conv1.0": 13}, groups.widths())
    prof = Profiler("host", table=LatencyTable(tmp_path / "t.sqlite"), measure=QUICK)
    lines = []
    stairs = model_staircases(prof, gm, groups, plan, save_to=tmp_path / "s.json", log=lines.append)
    assert set(stairs.groups) == {"stem.0", "conv1.0"} and len(lines) == 2
    st = stairs["conv1.0"]
    assert st.width == 13 and 13 in st.latency  # the plan's own width is measured
    assert st.neighbours == {n: plan.width(n) for n in neighbours(groups, "conv1.0")} == {"stem.0": 11}
    assert Staircases.load(tmp_path / "s.json", plan) == stairs
    compiles = prof.compiles
    again = model_staircases(prof, gm, groups, plan, previous=stairs, log=lines.append)
    assert again == stairs and prof.compiles == compiles and len(lines) == 2  # fresh: nothing measured
    moved = PrunePlan.from_widths({"stem.0": 16, "conv1.0": 13}, groups.widths())
    with pytest.raises(StaircaseError, match="stale"):
        stairs.check_plan(moved)
    refreshed = model_staircases(prof, gm, groups, moved, previous=stairs, log=lines.append)
    assert refreshed["conv1.0"].neighbours == {"stem.0": 16} and len(lines) == 3  # its neighbour moved: measured again
    assert refreshed["stem.0"] == stairs["stem.0"]  # its own width moved, its neighbours did not: still fresh
    retol = model_staircases(prof, gm, groups, moved, previous=refreshed, tol=0.1, log=lines.append)
    assert len(lines) == 5 and {st.tol for st in retol.groups.values()} == {0.1}  # another tolerance: swept again


def test_snapped_plans_sit_on_optimal_points(tiny, tmp_path):
    gm, groups = tiny
    plan = PrunePlan.from_widths({"stem.0": 11, "conv1.0": 13}, groups.widths())
    prof = Profiler("host", table=LatencyTable(":memory:"), measure=QUICK)
    stairs = model_staircases(prof, gm, groups, plan, log=lambda s: None)
    for mode in ("up", "down", "nearest"):
        snapped = snap(plan, stairs, importance(groups), mode)
        for g, st in stairs.groups.items():
            assert snapped.width(g) in st.optimal or snapped.width(g) == plan.width(g)
        if mode == "up":
            assert all(snapped.width(g) >= plan.width(g) for g in stairs.groups)


def test_the_rebuilt_students_predicted_latency_is_within_the_budget(tiny, tmp_path):
    gm, groups = tiny
    prof = Profiler("host", table=LatencyTable(tmp_path / "t.sqlite"), measure=QUICK)
    plan = PrunePlan.from_widths({"stem.0": 11, "conv1.0": 13}, groups.widths())
    stairs = model_staircases(prof, gm, groups, plan, log=lambda s: None)
    scores = importance(groups)
    teacher_s = predict(prof, gm, groups, PrunePlan({}, groups.widths()))
    fastest_s = predict(prof, gm, groups, fastest_plan(plan, stairs, scores))
    # budgets inside the reachable range, whatever the machine's load when the kernels were timed
    for budget_s in (fastest_s + 0.8 * (teacher_s - fastest_s), fastest_s + 0.3 * (teacher_s - fastest_s)):
        result = fit_budget(prof, gm, groups, plan, stairs, scores, budget_s, log=lambda s: None)
        assert result.predicted_s <= budget_s
        assert result.predicted_s == pytest.approx(predict(prof, gm, groups, result.plan))
        for g, st in result.staircases.groups.items():  # one optimal width per group (or the fastest plan)
            assert result.plan.width(g) in st.optimal
    budget_s = fastest_s + 0.5 * (teacher_s - fastest_s)
    by_params = fit_budget(prof, gm, groups, plan, stairs, scores, budget_s, value="params", log=lambda s: None)
    assert by_params.predicted_s <= budget_s
    with pytest.raises(BudgetError, match="minimum reachable"):
        fit_budget(prof, gm, groups, plan, stairs, scores, 0.01 * teacher_s, log=lambda s: None)


def test_the_uniform_answer_is_the_widest_single_ratio_within_the_budget(tiny, tmp_path):
    gm, groups = tiny
    prof = Profiler("host", table=LatencyTable(tmp_path / "t.sqlite"), measure=QUICK)
    plan, scores = PrunePlan({}, groups.widths()), importance(groups)
    teacher_s = predict(prof, gm, groups, plan)
    result = fit_uniform(prof, gm, groups, plan, scores, 0.7 * teacher_s, multiple=4, log=lambda s: None)
    assert result.predicted_s <= 0.7 * teacher_s and result.staircases is None
    assert result.predicted_s == pytest.approx(predict(prof, gm, groups, result.plan))
    fraction = max(r["fraction"] for r in result.rounds if r["predicted_s"] <= 0.7 * teacher_s)
    expected = uniform_widths(groups, fraction, 4)  # one ratio, every width a multiple of 4 (or the whole group)
    assert {g: result.plan.width(g) for g in expected} == expected
    assert all(w % 4 == 0 or w == groups[g].width for g, w in expected.items())
    wider = [s for s in uniform_steps(groups, 4) if s > fraction]  # the next ratio up is over the budget
    assert not wider or predict(prof, gm, groups, PrunePlan.from_widths(uniform_widths(groups, wider[0], 4),
                                                                         groups.widths())) > 0.7 * teacher_s
    with pytest.raises(BudgetError, match="cannot be met by one keep ratio"):
        fit_uniform(prof, gm, groups, plan, scores, 0.01 * teacher_s, multiple=4, log=lambda s: None)
