"""Adaptive group staircases: schedule transfer between grid widths saves compiles."""

import pytest

from hakd.cost.profile import Profiler
from hakd.sweep import group_latency, group_modules, group_staircase, lower_group
from hakd.cost.staircase import grid_points
from hakd.cost.table import LatencyTable
from tests.cost.conftest import QUICK

pytestmark = pytest.mark.slow


def test_adaptive_sweep_tries_only_the_grid_winners_between_grid_widths(tiny, monkeypatch):
    gm, groups = tiny
    prof = Profiler("host", table=LatencyTable(":memory:"), measure=QUICK)
    calls = []
    kernels = Profiler.kernels

    def spy(self, items, context="warm"):
        timings = kernels(self, items, context)
        for (k, only), timing in zip(items, timings):
            calls.append((only, timing.schedule, {c.key().split("/")[0] for c in self.candidates(k)}))
        return timings

    monkeypatch.setattr(Profiler, "kernels", spy)
    sweep = group_staircase(prof, gm, groups, "conv1.0")
    monkeypatch.setattr(Profiler, "kernels", kernels)

    assert [w for w in sweep.latency if w not in grid_points(groups["conv1.0"].width)], "no width between grid widths"
    template = lambda key: key.split("/")[0]  # noqa: E731  (tiles follow the width: the template transfers)
    restricted = [(only, chosen, {template(k) for k in only}, offered) for only, chosen, offered in calls if only]
    assert restricted and all(template(chosen) in wanted or not wanted & offered for _, chosen, wanted, offered in restricted)
    assert all(len(only) <= 2 for only, *_ in restricted)

    every = Profiler("host", table=LatencyTable(":memory:"), measure=QUICK)  # every candidate at the same widths
    context = every.context(every.lower(gm))
    for w in sweep.latency:
        group_latency(every, gm, groups, "conv1.0", w, context)
    assert prof.compiles < every.compiles


def test_retime_keeps_the_lower_value_without_rebuilding(tiny):
    gm, _ = tiny
    prof = Profiler("host", table=LatencyTable(":memory:"), measure=QUICK)
    timing = prof.model(gm)
    k = max(timing.kernels, key=lambda k: k.latency_s)
    key = (prof.target_key, k.signature, k.schedule, QUICK.threads)
    before, compiles = prof.table.lookup(*key, context=timing.context), prof.compiles
    kept = prof.retime(prof.lower(gm).kernels[k.kernel], k.schedule, timing.context)
    assert prof.compiles == compiles  # the library built for the first timing was kept
    assert kept.latency_s <= before.latency_s
    assert prof.table.lookup(*key, context=timing.context).latency_s == kept.latency_s


def test_a_winner_timed_in_this_run_is_timed_once_more(tiny, monkeypatch):
    gm, _ = tiny
    prof = Profiler("host", table=LatencyTable(":memory:"), measure=QUICK)
    retimed, retime = [], Profiler.retime
    monkeypatch.setattr(Profiler, "retime", lambda self, k, s, c: retimed.append((k.signature, s)) or retime(self, k, s, c))
    timing = prof.model(gm)
    assert sorted(retimed) == sorted({(k.signature, k.schedule) for k in timing.kernels})
    prof.model(gm)
    assert len(retimed) == len({(k.signature, k.schedule) for k in timing.kernels})  # once: not at every lookup
    reloaded = Profiler("host", table=prof.table, measure=QUICK).model(gm)  # from the table: nothing timed
    assert len(retimed) == len({(k.signature, k.schedule) for k in timing.kernels})
    assert [k.latency_s for k in reloaded.kernels] == [k.latency_s for k in prof.model(gm).kernels]


def test_a_sweep_times_each_kernel_it_measured_a_third_time(tiny, monkeypatch):
    gm, groups = tiny
    prof = Profiler("host", table=LatencyTable(":memory:"), measure=QUICK)
    modules, chosen, kernels = group_modules(groups, "conv1.0"), set(), Profiler.kernels

    def spy(self, items, context="warm"):  # the schedules the sweep chose for the group's kernels
        timings = kernels(self, items, context)
        for timing in timings:
            if any(modules & set(call) for call in timing.call_modules):
                chosen.add((timing.signature, timing.schedule, context))
        return timings

    monkeypatch.setattr(Profiler, "kernels", spy)
    sweep = group_staircase(prof, gm, groups, "conv1.0")
    for w in sweep.latency:  # every measured width's kernels were chosen (widths padded into one block share them)
        low, members = lower_group(gm, groups, "conv1.0", w, block=prof.channel_block)
        sigs = {k.signature for k in low.kernels.values() if any(members & set(call) for call in k.call_modules)}
        assert sigs and sigs <= {c[0] for c in chosen}, w
    assert {prof._timings[c] for c in chosen} == {3}  # twice back to back, once more apart
    assert sweep.confirmed | sweep.remeasured == set(sweep.latency)


def test_a_group_counts_its_depthwise_kernels_as_well_as_its_producers_and_consumers(tiny):
    gm, groups = tiny
    low, modules = lower_group(gm, groups, "stem.0", 8)
    counted = {k.kind for k in low.kernels.values() if any(modules & set(call) for call in k.call_modules)}
    assert {"conv2d", "depthwise"} <= counted  # dw.0 (a per-channel member) changes shape with the width too


def test_a_warm_sweep_times_nothing_and_finds_the_same_staircase(tiny, tmp_path, monkeypatch):
    gm, groups = tiny
    table = LatencyTable(tmp_path / "t.sqlite")
    cold = group_staircase(Profiler("host", table=table, measure=QUICK), gm, groups, "conv1.0")
    warm_prof = Profiler("host", table=table, measure=QUICK)
    timed = []
    monkeypatch.setattr(warm_prof.runner, "time", lambda *a, **k: timed.append(a) or (_ for _ in ()).throw(AssertionError))
    warm = group_staircase(warm_prof, gm, groups, "conv1.0")
    assert timed == [] and warm_prof.compiles == 0  # every value from the table: nothing built or re-timed
    again = group_staircase(warm_prof, gm, groups, "conv1.0")
    assert again.latency == warm.latency and again.optimal == warm.optimal  # and the same staircase every time
    assert set(warm.latency) <= set(range(1, groups["conv1.0"].width + 1)) and cold.optimal


def test_the_same_profiler_sweeps_warm_without_timing_again(tiny, tmp_path, monkeypatch):
    gm, groups = tiny
    prof = Profiler("host", table=LatencyTable(tmp_path / "t.sqlite"), measure=QUICK)
    cold = group_staircase(prof, gm, groups, "conv1.0")
    timed = []
    time = prof.runner.time
    monkeypatch.setattr(prof.runner, "time", lambda *a, **k: timed.append(a) or time(*a, **k))
    warm = group_staircase(prof, gm, groups, "conv1.0")
    assert timed == [] and warm.evaluations > 0 and cold.optimal  # every kernel here was timed (twice) already


def test_staircases_timed_with_other_kernels_or_summed_otherwise_are_measured_again(tiny, tmp_path):
    import dataclasses

    from hakd.cost.profile import PREDICTION
    from hakd.cost.schedules import SCHEDULE_VERSION
    from hakd.staircases import Staircases
    from hakd.sweep import load_or_measure

    gm, groups = tiny
    prof = Profiler("host", table=LatencyTable(tmp_path / "t.sqlite"), measure=QUICK)
    path = tmp_path / "staircases.json"
    from hakd.plan import PrunePlan

    plan = PrunePlan({}, groups.widths())
    first = load_or_measure(path, prof, gm, groups, plan, log=lambda s: None)
    assert first.kernels == SCHEDULE_VERSION and Staircases.load(path).kernels == SCHEDULE_VERSION
    old = dataclasses.replace(first, kernels=SCHEDULE_VERSION - 1,
                              groups={g: dataclasses.replace(st, latency={w: 1.0 for w in st.latency}) for g, st in first.groups.items()})
    old.save(path)  # as a file written before the templates changed
    again = load_or_measure(path, prof, gm, groups, plan, log=lambda s: None)
    assert again.kernels == SCHEDULE_VERSION and all(set(st.latency.values()) != {1.0} for st in again.groups.values())
    summed_before = dataclasses.replace(old, kernels=SCHEDULE_VERSION, prediction=PREDICTION - 1)
    summed_before.save(path)  # as a file written before kernel timings were summed as now
    assert Staircases.load(path).prediction == PREDICTION - 1
    again = load_or_measure(path, prof, gm, groups, plan, log=lambda s: None)
    assert again.prediction == PREDICTION and all(set(st.latency.values()) != {1.0} for st in again.groups.values())


def test_a_group_in_slices_is_swept_in_whole_slices_and_its_students_export_exactly(tmp_path):
    """RegNet-X's grouped conv (group width 8): widths move one channel per conv group."""
    import numpy as np
    import torch

    from hakd.budget import fit_budget
    from hakd.export import export, load
    from hakd.passes.groups import find_groups
    from hakd.passes.rebuild import rebuild
    from hakd.passes.trace import trace
    from hakd.sweep import model_staircases, predict
    from tests.cost.conftest import randomised
    from tests.passes.tv_models import TV_MODELS

    torch.manual_seed(0)
    gm = trace(randomised(TV_MODELS["regnet_x_tiny"]()), torch.zeros(1, 3, 32, 32))
    groups = find_groups(gm)
    prof = Profiler("host", table=LatencyTable(tmp_path / "t.sqlite"), measure=QUICK)
    plan = groups.plan({"trunk.2.f.0.0": 16, "trunk.2.f.1.0": 20})
    stairs = model_staircases(prof, gm, groups, plan, only=["trunk.2.f.1.0"], log=lambda s: None)
    st = stairs.groups["trunk.2.f.1.0"]
    assert st.width == 20 and all(w % 4 == 0 for w in st.curve) and all(w % 4 == 0 for w in st.optimal)
    rng = np.random.default_rng(0)
    importance = {g.name: rng.random(g.width) for g in groups.prunable()}
    # 5% above the plan: on a loaded machine, every group at its fastest width was once timed 0.1% above it
    budget_s = 1.05 * predict(prof, gm, groups, plan)
    for value in ("importance", "params"):
        fitted = fit_budget(prof, gm, groups, plan, stairs, importance, budget_s, value=value, log=lambda s: None)
        assert fitted.plan.width("trunk.2.f.1.0") % 4 == 0 and fitted.plan.slices == groups.slices()
        assert fitted.predicted_s <= fitted.budget_s
    student = rebuild(gm, groups, plan)
    result = export(student, tmp_path / "e", prof)
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        expected = student(x).numpy()
    assert student.get_submodule("trunk.2.f.1.0").groups == 4 and result.max_abs_error < 1e-5
    np.testing.assert_allclose(load(tmp_path / "e")(x.numpy()), expected, atol=1e-5, rtol=1e-4)


def test_a_pruned_shufflenet_replays_its_shuffles_as_gathers_and_exports_exactly(tmp_path):
    """ShuffleNetV2 units (channel split, concat, shuffle) pruned: the moves become index_selects."""
    import numpy as np
    import torch

    from hakd.export import export, load
    from hakd.passes.groups import find_groups
    from hakd.passes.rebuild import rebuild
    from hakd.passes.trace import trace
    from tests.cost.conftest import randomised
    from tests.passes.tv_models import TV_MODELS

    torch.manual_seed(0)
    x = torch.randn(1, 3, 32, 32)
    gm = trace(randomised(TV_MODELS["shufflenet_v2_tiny"]()), x)
    groups = find_groups(gm)
    rng = np.random.default_rng(0)
    plan = groups.plan(keep={g.name: tuple(sorted(rng.choice(g.width, g.width // 2 + 1, replace=False)))
                             for g in groups.prunable()})
    student = rebuild(gm, groups, plan)
    assert sum(n.target is torch.index_select for n in student.graph.nodes) == len(groups.gathers)
    again = find_groups(trace(student, x))  # a student is a model like any other: its gathers are moves too
    assert all(g.prunable for g in again if g.name not in ("x", "fc"))
    result = export(student, tmp_path / "e", Profiler("host", table=LatencyTable(tmp_path / "t.sqlite"), measure=QUICK))
    with torch.no_grad():
        expected = student(x).numpy()
    assert result.max_abs_error < 1e-5
    np.testing.assert_allclose(load(tmp_path / "e")(x.numpy()), expected, atol=1e-5, rtol=1e-4)


def test_a_partial_staircases_file_is_finished_before_any_decision(tiny, tmp_path):
    """An interrupted sweep (or `hakd staircases --groups` of one group) leaves a file with some
    groups: the reader measures the others instead of deciding on part of the model."""
    from hakd.staircases import Staircases
    from hakd.sweep import load_or_measure, model_staircases

    gm, groups = tiny
    prof = Profiler("host", table=LatencyTable(tmp_path / "t.sqlite"), measure=QUICK)
    path, first = tmp_path / "staircases.json", groups.prunable()[0].name
    model_staircases(prof, gm, groups, None, only=[first], save_to=path, log=lambda s: None)
    assert list(Staircases.load(path).groups) == [first]
    said = []
    stairs = load_or_measure(path, prof, gm, groups, groups.plan(), log=said.append)
    assert set(stairs.groups) == {g.name for g in groups.prunable()} == set(Staircases.load(path).groups)
    assert any(f"holds 1 of {len(groups.prunable())}" in s for s in said)
    assert stairs[first] == Staircases.load(path)[first]  # the group measured before is kept
