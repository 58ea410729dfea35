import functools

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hakd import models
from hakd.errors import HakdError, PlanError
from hakd.passes.groups import find_groups
from hakd.passes.rebuild import rebuild, zero_pruned
from hakd.passes.trace import trace
from hakd.plan import PrunePlan
from tests.passes.timm_models import TIMM_MODELS
from tests.passes.tv_models import TV_MODELS

ALL = {**{n: functools.partial(models.create, n) for n in models.names()}, **TV_MODELS, **TIMM_MODELS}


def _randomise_bn(model):
    """Non-trivial BatchNorm statistics, so a zeroed channel does not stay zero after BN."""
    g = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.copy_(torch.rand(m.num_features, generator=g) * 2 - 1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.rand(m.num_features, generator=g) - 0.5)
    return model


@functools.lru_cache(maxsize=None)
def traced(name):
    torch.manual_seed(0)
    # float64: deep nets with random BN statistics reach activations of ~1e3, where float32
    # rounding alone exceeds 1e-5; in float64 any real difference stands out.
    model = _randomise_bn(ALL[name](in_channels=1, num_classes=10)).eval().double()
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    gm = trace(model, x)
    return model, gm, find_groups(gm), x


def random_plan(groups, seed, fraction):
    """Random channels of random groups; a group in slices keeps the same number in each."""
    rng = np.random.default_rng(seed)
    keep = {}
    for g in groups.prunable():
        if rng.random() < fraction:
            block = g.width // g.slices
            n = int(rng.integers(1, block + 1))
            keep[g.name] = tuple(sorted(b * block + c for b in range(g.slices) for c in rng.choice(block, n, replace=False)))
    return groups.plan(keep=keep)


@pytest.mark.parametrize("name", sorted(ALL))
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), fraction=st.sampled_from([0.3, 1.0]))
def test_rebuild_equals_zeroing_the_pruned_channels(name, seed, fraction):
    model, gm, groups, x = traced(name)
    plan = random_plan(groups, seed, fraction)
    small = rebuild(gm, groups, plan).eval()
    with torch.no_grad():
        expected = zero_pruned(gm, groups, plan, x)
        got = small(x)
    assert torch.allclose(got, expected, atol=1e-5, rtol=0), (got - expected).abs().max()
    n_small = sum(p.numel() for p in small.parameters())
    assert n_small <= sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", sorted(ALL))
def test_pruning_nothing_is_bit_exact(name):
    model, gm, groups, x = traced(name)
    with torch.no_grad():
        assert torch.equal(rebuild(gm, groups, PrunePlan({}, groups.widths()))(x), model(x))


def test_rebuild_leaves_its_input_untouched_and_shrinks_weights():
    model, gm, groups, x = traced("resnet20")
    before = {k: v.clone() for k, v in gm.state_dict().items()}
    plan = PrunePlan({"layers.3.conv1": (0, 5, 9), "conv1": tuple(range(0, 16, 2))}, groups.widths())
    small = rebuild(gm, groups, plan)
    assert all(torch.equal(before[k], v) for k, v in gm.state_dict().items())
    mod = small.get_submodule
    assert mod("layers.3.conv1").weight.shape == (3, 8, 3, 3) and mod("layers.3.bn1").running_var.shape == (3,)
    assert mod("conv1").weight.shape == (8, 1, 3, 3) and mod("layers.0.conv2").weight.shape == (8, 16, 3, 3)
    assert mod("layers.3.conv1").in_channels == 8 and mod("layers.3.bn1").num_features == 3
    assert torch.equal(mod("layers.3.conv1").weight, gm.get_submodule("layers.3.conv1").weight[[0, 5, 9]][:, ::2])


def test_save_load_rebuild_gives_the_same_model(tmp_path):
    model, gm, groups, x = traced("mobilenet_v2")
    plan = random_plan(groups, 7, 0.5)
    plan.save(tmp_path / "plan.json")
    again = PrunePlan.load(tmp_path / "plan.json")
    assert again == plan
    a, b = rebuild(gm, groups, plan), rebuild(gm, groups, again)
    assert all(torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values()))
    with torch.no_grad():
        assert torch.equal(a.eval()(x), b.eval()(x))


def test_plan_for_another_model_is_refused():
    _, gm20, groups20, _ = traced("resnet20")
    _, _, groups56, _ = traced("resnet56")
    plan = random_plan(groups56, 0, 1.0)
    with pytest.raises(PlanError, match="another model"):
        rebuild(gm20, groups20, plan)


def test_out_of_range_and_empty_and_unsorted_plans_name_the_group():
    widths = traced("resnet20")[2].widths()
    with pytest.raises(PlanError, match=r"'conv1'.*\[0, 16\)"):
        PrunePlan({"conv1": (3, 16)}, widths)
    with pytest.raises(PlanError, match="empties group 'conv1'"):
        PrunePlan({"conv1": ()}, widths)
    with pytest.raises(PlanError, match="sorted and unique"):
        PrunePlan({"conv1": (2, 1)}, widths)
    with pytest.raises(PlanError, match="'conv9'"):
        PrunePlan({"conv9": (1,)}, widths)



def test_a_hand_edited_plan_with_fractional_or_string_numbers_is_refused_not_coerced():
    widths = traced("resnet20")[2].widths()
    for keep, what in (({"conv1": (0, 1.5)}, "a kept channel of 'conv1' .* got 1.5"),
                       ({"conv1": (0, "3")}, "a kept channel of 'conv1' .* got '3'"),
                       ({"conv1": (0, True)}, "got True")):
        with pytest.raises(PlanError, match=what):
            PrunePlan(keep, widths)
    with pytest.raises(PlanError, match="the width of 'conv1' must be a whole number, got '16'"):
        PrunePlan({}, {**widths, "conv1": "16"})
    text = PrunePlan({"conv1": (0, 1)}, widths).to_json().replace('"conv1": [\n   0,\n   1\n  ]', '"conv1": [0, 1.0]')
    assert PrunePlan.from_json(text).keep["conv1"] == (0, 1)  # 1.0 is a whole number: still read


def test_pruning_an_unprunable_group_is_refused_with_its_reason():
    _, gm, groups, _ = traced("resnet20")
    with pytest.raises(PlanError, match="'fc'.*reaches the model output"):
        rebuild(gm, groups, PrunePlan({"fc": (0, 1)}, groups.widths()))


def test_damaged_plan_files_are_reported(tmp_path):
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(PlanError, match="bad.json is not valid JSON"):
        PrunePlan.load(tmp_path / "bad.json")
    (tmp_path / "other.json").write_text('{"a": 1}')
    with pytest.raises(HakdError, match="not a hakd plan"):
        PrunePlan.load(tmp_path / "other.json")
    with pytest.raises(PlanError, match="no plan file"):
        PrunePlan.load(tmp_path / "missing.json")


def test_a_grouped_conv_keeps_each_filter_on_its_own_groups_kept_inputs():
    model, gm, groups, x = traced("resnext_tiny")
    plan = groups.plan(keep={"reduce.0": (1, 2, 9, 11, 17, 18, 30, 31), "grouped.0": (0, 3, 5, 8, 10, 14, 16, 21, 22, 26, 27, 29)})
    small = rebuild(gm, groups, plan).eval()
    conv = small.get_submodule("grouped.0")
    assert (conv.in_channels, conv.out_channels, conv.groups) == (8, 12, 4)
    full = gm.get_submodule("grouped.0").weight
    assert torch.equal(conv.weight[4], full[10][[1, 3]])  # filter 10 is in conv group 1, whose inputs 9 and 11 survive
    with torch.no_grad():
        assert torch.allclose(small(x), zero_pruned(gm, groups, plan, x), atol=1e-10, rtol=0)


def test_plans_keep_the_same_number_of_channels_in_every_slice():
    _, _, groups, _ = traced("resnext_tiny")
    with pytest.raises(PlanError, match=r"keeps \(2, 1, 1, 1\) channels in its 4 slices"):
        groups.plan(keep={"reduce.0": (0, 1, 8, 16, 24)})
    with pytest.raises(PlanError, match="must be a multiple of 4"):
        groups.plan({"reduce.0": 6})
    with pytest.raises(PlanError, match=r"keeps \(8, 0, 0, 0\) channels in its 4 slices"):  # made without the slices
        rebuild(traced("resnext_tiny")[1], groups, PrunePlan.from_widths({"reduce.0": 8}, groups.widths()))
    plan = groups.plan({"reduce.0": 8, "grouped.0": 4})
    assert PrunePlan.from_json(plan.to_json()) == plan and plan.slices == {"reduce.0": 4, "grouped.0": 4}
