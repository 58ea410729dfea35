"""hakd.trials: ways of spending a budget, the trial and held-out images, and the choice between students."""

import json

import pytest
import torch

from hakd.config import DistillConfig, TrainConfig, TrialConfig
from hakd.errors import ConfigError
from hakd.plan import PrunePlan
from hakd.train import evaluate, fit
from hakd.passes.uniform import uniform_widths
from hakd.trials import DEFAULT_WAYS, Trial, Way, chosen, parse_ways, spending_ways, trial_splits, try_plans
from tests.conftest import band_split
from tests.passes.test_fisher import traced


def test_ways_are_every_combination_once_and_bad_ones_are_refused():
    assert spending_ways(("params", "importance", "params"), (0.5, 0)) == [
        Way("params", 0.5), Way("params", 0.0), Way("importance", 0.5), Way("importance", 0.0)]
    assert [w.folder_name for w in spending_ways("params", (0.0, 0.25))] == ["params", "params_min_keep0.25"]
    with pytest.raises(ConfigError, match=r"min_keep .*\[0, 1\]; got 1.5"):
        spending_ways("importance", (0.0, 1.5))
    with pytest.raises(ConfigError, match="at least one value"):
        spending_ways((), 0.0)
    with pytest.raises(ConfigError, match="at least one value"):
        spending_ways("params", ())
    with pytest.raises(ConfigError, match=r"TrialConfig.held_out must be >= 1, got 0"):
        TrialConfig(held_out=0)


def test_trial_and_held_out_images_never_overlap():
    split = band_split(40)
    fit, held = trial_splits(split, TrialConfig(images=1000, held_out=10))
    assert len(fit) == 30 and len(held) == 10  # fewer training images than asked: all but the held-out ones
    assert torch.equal(torch.cat([fit.labels, held.labels]), split.labels) and not held.augment
    with pytest.raises(ConfigError, match="held_out is 40, but the training split has only 40 images"):
        trial_splits(split, TrialConfig(held_out=40))


def test_the_most_accurate_on_held_out_images_is_chosen_and_none_is_an_error():
    trials = [Trial("a", None, 10, 0.70, 0.9), Trial("b", None, 20, 0.75, 0.8), Trial("c", None, 30, 0.75, 0.7)]
    assert chosen(trials).label == "c"
    assert chosen(trials[:2]).label == "b"
    with pytest.raises(ConfigError, match="no trial"):
        chosen([])


@pytest.mark.slow
def test_each_way_trains_on_the_trial_images_and_is_scored_on_the_held_out_ones(tmp_path):
    teacher, groups = traced()
    train = band_split(96)
    plans = {Way("importance"): PrunePlan.from_widths({"conv1": 3, "conv2": 4}, groups.widths()),
             Way("params", 0.5): PrunePlan.from_widths({"conv1": 6, "conv2": 4}, groups.widths()),
             Way("importance", 0.25): PrunePlan.from_widths({"conv1": 3, "conv2": 4}, groups.widths(), note="floor")}
    config, recipe = TrialConfig(images=48, held_out=32), DistillConfig(epochs=5, batch_size=16, lr=0.01, threads=1)
    trials = try_plans(teacher, teacher, groups, plans, train, recipe, config, tmp_path, log=lambda s: None)
    assert [t.label for t in trials] == ["importance", "params,min_keep=0.5", "importance,min_keep=0.25"]
    same = trials[2]  # the first way's student again: scored as it, not trained again
    assert same.same_as == "importance" and same.row()["same_as"] == "importance"
    assert (same.held_out_accuracy, same.held_out_loss, same.params) == (
        trials[0].held_out_accuracy, trials[0].held_out_loss, trials[0].params)
    assert not (tmp_path / Way("importance", 0.25).folder_name).exists() and "same_as" not in trials[0].row()
    _, held = trial_splits(train, config)
    for trial, way in list(zip(trials, plans))[:2]:
        folder = tmp_path / way.folder_name
        run = json.loads((folder / "config.json").read_text())
        assert run["train_data"]["images"] == 48 and run["config"]["epochs"] == 1  # one epoch over the trial images
        assert run["plan"] == plans[way].to_dict()
        student = torch.load(folder / "model.pt", weights_only=False)["model"]
        assert evaluate(student, held) == pytest.approx((trial.held_out_loss, trial.held_out_accuracy))
        assert trial.params == sum(p.numel() for p in student.parameters())
    again = try_plans(teacher, teacher, groups, plans, train, recipe, config, tmp_path, log=lambda s: None)
    assert again == trials  # resumed from the trials' folders, not trained again


def test_ways_parse_from_short_specs_and_the_uniform_way_takes_no_floor():
    assert parse_ways(DEFAULT_WAYS) == [Way("importance"), Way("params", 0.5), Way("uniform")]
    assert parse_ways("params:0.25") == [Way("params", 0.25)] and parse_ways([Way("uniform")]) == [Way("uniform")]
    with pytest.raises(ConfigError, match="a min_keep floor does not apply"):
        Way("uniform", 0.5)
    for bad, match in ((["fisher"], "got 'fisher'"), (["params:2"], r"min_keep .*\[0, 1\]"), ([], "at least one way"),
                       ([3], "got int")):
        with pytest.raises(ConfigError, match=match):
            parse_ways(bad)


@pytest.mark.slow
def test_a_way_clearly_worse_than_the_simple_answer_is_not_kept(tmp_path):
    """Parameters kept with no floor can leave a group one channel: the trial then keeps the uniform student."""
    teacher, groups = traced()
    train = band_split(640, seed=2)
    fit(teacher, train, band_split(32, seed=3), TrainConfig(epochs=10, batch_size=16, lr=0.05, threads=1), tmp_path / "teacher",
        progress=False)
    crippled = PrunePlan.from_widths({g.name: 1 for g in groups.prunable()}, groups.widths(), note="params")
    uniform = PrunePlan.from_widths(uniform_widths(groups, 0.5, 2), groups.widths(), note="uniform")
    config, recipe = TrialConfig(images=576, held_out=64), DistillConfig(batch_size=16, lr=0.05, threads=1)
    torch.manual_seed(0)
    trials = try_plans(teacher, teacher, groups, {Way("params"): crippled, Way("uniform"): uniform}, train, recipe,
                       config, tmp_path / "trials", log=lambda s: None)
    worse, simple = trials
    assert simple.held_out_accuracy - worse.held_out_accuracy >= 0.25  # clearly: 16 of 64 held-out images, not a tie
    assert chosen(trials).label == "uniform"
