import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hakd.config import PruneConfig
from hakd.data import Split
from hakd.errors import CheckpointError, ConfigError, TrainingError
from hakd.passes.fisher import HISTORY, PLAN, STATE, fisher_prune
from hakd.passes.groups import find_groups
from hakd.passes.probes import insert_probes
from hakd.passes.rebuild import rebuild
from hakd.passes.trace import trace
from hakd.plan import PrunePlan
from tests.conftest import band_split


class Small(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 3, padding=1)
        self.conv2 = nn.Conv2d(6, 8, 3, padding=1)
        self.bn = nn.BatchNorm2d(8)
        self.fc = nn.Linear(8, 4)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.bn(self.conv2(x)))
        return self.fc(x.mean((2, 3)))


def traced(seed=0):
    torch.manual_seed(seed)
    gm = trace(Small(), torch.zeros(2, 1, 8, 8))
    return gm, find_groups(gm)


def test_saliency_equals_a_hand_computation():
    gm, groups = traced()
    probed = insert_probes(gm, groups)
    x, y = torch.randn(5, 1, 8, 8), torch.tensor([0, 1, 2, 3, 0])
    probed.train()
    probed.record(True)
    F.cross_entropy(probed(x), y).backward()
    probed.count(5)
    got = probed.saliency()
    # by hand: the activations conv2 and fc read, and the loss gradient with respect to them
    model = Small()
    model.load_state_dict(gm.state_dict())
    model.train()
    a1 = F.relu(model.conv1(x))
    a1.retain_grad()
    a2 = F.relu(model.bn(model.conv2(a1)))
    pooled = a2.mean((2, 3))
    pooled.retain_grad()
    F.cross_entropy(model.fc(pooled), y).backward()
    hand1 = 0.5 * ((a1 * a1.grad).sum((2, 3)) ** 2).mean(0)
    hand2 = 0.5 * ((pooled * pooled.grad) ** 2).mean(0)  # fc reads the pooled vector: one feature per channel
    np.testing.assert_allclose(got["conv1"], hand1.detach().numpy(), rtol=1e-5, atol=1e-12)
    np.testing.assert_allclose(got["conv2"], hand2.detach().numpy(), rtol=1e-5, atol=1e-12)


def test_masks_equal_rebuild():
    gm, groups = traced()
    probed = insert_probes(gm, groups).eval()
    probed.mask("conv1", 2)
    probed.mask("conv2", 0)
    probed.mask("conv2", 5)
    x = torch.randn(3, 1, 8, 8)
    small = rebuild(gm, groups, PrunePlan(probed.keep(), groups.widths())).eval()
    with torch.no_grad():
        torch.testing.assert_close(small(x), probed(x), atol=1e-6, rtol=0)


def data(n=96, seed=0):
    return band_split(n, seed)


CONFIG = PruneConfig(target="channels", amount=5, prune_every=3, batch_size=16, lr=0.01, threads=1)


def test_prunes_to_the_target_and_writes_plan_and_history(tmp_path):
    gm, groups = traced()
    result = fisher_prune(gm, groups, data(), CONFIG, tmp_path)
    assert sum(result.plan.pruned_widths()[g.name] for g in groups.prunable()) == 5
    assert len(result.history) == 14 - 5
    assert PrunePlan.load(tmp_path / PLAN) == result.plan
    history = json.loads((tmp_path / HISTORY).read_text())
    assert [h["step"] for h in history] == list(range(3, 3 * 9 + 1, 3))
    assert all(h["width"] >= 1 for h in history)
    small = rebuild(result.model, groups, result.plan)
    assert small.conv1.out_channels + small.conv2.out_channels == 5


def test_same_seed_same_plan_bit_for_bit(tmp_path):
    a = fisher_prune(*traced(), data(), CONFIG, tmp_path / "a")
    b = fisher_prune(*traced(), data(), CONFIG, tmp_path / "b")
    assert a.plan == b.plan and a.history == b.history


def test_resume_after_interruption_gives_the_same_result(tmp_path):
    whole = fisher_prune(*traced(), data(), CONFIG, tmp_path / "whole")
    # interrupt: a run capped at 10 steps stops with its state saved after the 3rd removal
    with pytest.raises(TrainingError, match="max_steps"):
        fisher_prune(*traced(), data(), PruneConfig(**{**CONFIG.to_dict(), "max_steps": 10}), tmp_path / "cut")
    state = torch.load(tmp_path / "cut" / STATE, weights_only=False)
    assert len(state["history"]) == 3
    state["config"] = CONFIG.to_dict()  # continue it as the uncapped run
    torch.save(state, tmp_path / "cut" / STATE)
    resumed = fisher_prune(*traced(), data(), CONFIG, tmp_path / "cut", resume=True)
    assert resumed.plan == whole.plan
    assert [h["channel"] for h in resumed.history] == [h["channel"] for h in whole.history]


def test_resume_on_other_training_data_is_refused(tmp_path):
    with pytest.raises(TrainingError, match="max_steps"):
        fisher_prune(*traced(), data(), PruneConfig(**{**CONFIG.to_dict(), "max_steps": 10}), tmp_path)
    capped = PruneConfig(**{**CONFIG.to_dict(), "max_steps": 10})
    with pytest.raises(CheckpointError, match="differs in the training data"):
        fisher_prune(*traced(), band_split(32, seed=5), capped, tmp_path, resume=True)


def test_bad_inputs(tmp_path):
    gm, groups = traced()
    with pytest.raises(ConfigError, match="would empty a group"):
        fisher_prune(gm, groups, data(), PruneConfig(target="channels", amount=1), tmp_path / "a")
    empty = Split(torch.zeros(0, 1, 8, 8, dtype=torch.uint8), torch.zeros(0, dtype=torch.int64), (0.0,), (1.0,), False, 4)
    with pytest.raises(TrainingError, match="yielded no batch"):
        fisher_prune(gm, groups, empty, CONFIG, tmp_path / "b")
    with torch.no_grad():
        gm.fc.weight.fill_(float("nan"))
    with pytest.raises(TrainingError, match="loss became nan"):
        fisher_prune(gm, groups, data(), CONFIG, tmp_path / "c")
    with pytest.raises(CheckpointError, match="already holds"):
        fisher_prune(*traced(), data(), CONFIG, tmp_path / "c")
    with pytest.raises(ConfigError, match="latency_of"):
        fisher_prune(*traced(), data(), PruneConfig(target="latency", amount=1e-3), tmp_path / "d")
    with pytest.raises(ValueError, match="fraction"):
        PruneConfig(target="params", amount=1.5)


def test_penalised_variant_prefers_channels_that_save_more_parameters(tmp_path):
    gm, groups = traced()
    # with a huge penalty the share of parameters a channel saves decides, whatever its saliency
    from hakd.passes.fisher import _param_share

    share = _param_share(gm, groups, (1, 1, 8, 8))
    heavy = max(share, key=share.get)
    config = PruneConfig(target="channels", amount=13, prune_every=3, batch_size=16, lr=0.01, threads=1, penalty=1e6)
    result = fisher_prune(gm, groups, data(), config, tmp_path)
    assert result.history[0]["group"] == heavy


@pytest.mark.slow
def test_latency_target_uses_the_cost_model(tmp_path):
    from hakd.cost.measure import MeasureConfig
    from hakd.cost.profile import Profiler
    from hakd.cost.table import LatencyTable

    gm, groups = traced()
    prof = Profiler("host", table=LatencyTable(tmp_path / "t.sqlite"),
                    measure=MeasureConfig(number=5, repeat=3, min_repeat_ms=5, cache="warm"))  # steady timings of tiny kernels
    from hakd.sweep import latency_of

    latency = latency_of(prof, gm, groups)
    full = latency(groups.widths())
    narrowest = latency({g.name: 1 for g in groups.prunable()})  # in the table now: reachable whatever the noise
    budget = (full + narrowest) / 2
    config = PruneConfig(target="latency", amount=budget, prune_every=2, batch_size=16, lr=0.01, threads=1)
    result = fisher_prune(gm, groups, data(), config, tmp_path / "run", latency_of=latency)
    assert result.history[-1]["latency_s"] <= budget
    assert all(h["latency_s"] > budget for h in result.history[:-1])  # it stopped at the first plan within budget


def test_importance_is_each_channels_saliency_last_window_alive(tmp_path):
    gm, groups = traced()
    config = PruneConfig(target="channels", amount=10, prune_every=3, batch_size=16, lr=0.01, threads=1)
    result = fisher_prune(gm, groups, data(), config, tmp_path)
    saved = json.loads((tmp_path / "importance.json").read_text())
    assert set(saved) == set(result.importance) == {g.name for g in groups.prunable()}
    for h in result.history:  # a pruned channel keeps the saliency it had when it was removed
        assert result.importance[h["group"]][h["channel"]] == pytest.approx(h["saliency"])
    for g, kept in result.plan.keep.items():
        assert np.allclose(saved[g], result.importance[g])
        assert (result.importance[g][list(kept)] > 0).all()  # every kept channel was scored


def test_latency_penalty_needs_the_staircases(tmp_path):
    config = PruneConfig(target="channels", amount=13, prune_every=3, batch_size=16, lr=0.01, threads=1, penalty=1.0,
                         penalty_on="latency")
    with pytest.raises(ConfigError, match="latency_saved"):
        fisher_prune(*traced(), data(), config, tmp_path / "a")
    gm, groups = traced()
    costly = groups.prunable()[0].name  # one channel of this group saves everything, the others nothing
    result = fisher_prune(gm, groups, data(), dataclasses.replace(config, penalty=1e6), tmp_path / "b",
                          latency_saved=lambda g, w: 1.0 if g == costly else 0.0)
    assert result.history[0]["group"] == costly


class SmallGrouped(nn.Module):
    """A grouped conv (2 groups) between two dense convs: its input and output groups come in 2 slices."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, padding=1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.conv3 = nn.Conv2d(8, 6, 1)
        self.fc = nn.Linear(6, 4)

    def forward(self, x):
        x = F.relu(self.grouped(F.relu(self.conv1(x))))
        return self.fc(F.relu(self.conv3(x)).mean((2, 3)))


def test_a_group_in_slices_loses_one_channel_per_slice_at_once(tmp_path):
    torch.manual_seed(0)
    gm = trace(SmallGrouped(), torch.zeros(2, 1, 8, 8))
    groups = find_groups(gm)
    assert groups.slices() == {"conv1": 2, "grouped": 2}
    config = dataclasses.replace(CONFIG, amount=8)  # 22 channels -> 8
    result = fisher_prune(gm, groups, data(), config, tmp_path)
    widths = result.plan.pruned_widths()
    assert widths["conv1"] % 2 == 0 and widths["grouped"] % 2 == 0 and widths["conv1"] >= 2
    for g in ("conv1", "grouped"):  # removals come in pairs, one from each slice, at the same step
        steps = [(h["step"], h["channel"] // 4) for h in result.history if h["group"] == g]
        assert sorted(steps) == sorted((s, k) for s in {s for s, _ in steps} for k in (0, 1))
    small = rebuild(result.model, groups, result.plan)
    assert small.grouped.groups == 2 and small.grouped.in_channels == widths["conv1"]
