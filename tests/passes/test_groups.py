import json
from pathlib import Path

import pytest
import torch
from torch import nn

from hakd import models
from hakd.errors import GroupError
from hakd.passes.groups import Member, find_groups
from hakd.passes.trace import trace
from tests.passes.tv_models import TV_MODELS

GOLDEN = Path(__file__).parent / "golden"


def groups_of(model, shape=(1, 3, 32, 32)):
    return find_groups(trace(model, torch.zeros(shape)))


def test_resnet_residual_groups_join_every_block_output():
    g = groups_of(models.resnet20())
    stage1 = g["conv1"]
    assert stage1.prunable and stage1.width == 16
    for i in range(3):
        assert Member(f"layers.{i}.conv2", "out") in stage1.members
        assert Member(f"layers.{i}.conv1", "in") in stage1.members
    assert Member("layers.3.shortcut.0", "in") in stage1.members  # the projection reads stage 1
    stage2 = g["layers.3.conv2"]
    assert Member("layers.3.shortcut.0", "out") in stage2.members and Member("layers.3.shortcut.1", "channel") in stage2.members
    assert Member("fc", "in") in g["layers.6.conv2"].members
    assert [x.name for x in g if not x.prunable] == ["x", "fc"]


def test_densenet_concat_offsets():
    g = groups_of(models.densenet40())
    block1_layer0 = g["features.1.0.conv2"]  # 12 channels, read by every later layer of block 1
    readers = [m.module for m in block1_layer0.members if m.role == "in"]
    assert readers == [f"features.1.{i}.conv1" for i in range(1, 6)] + ["features.2.2"]
    rec = next(r for r in g.records.values() if r.module == "features.1.3.conv1")
    gidx, pos = g.locate(rec.in_ids)
    names = [g.groups[i].name for i in gidx]
    # layer 3 reads [stem 24 | layer0 12 | layer1 12 | layer2 12], in that order
    assert names == ["features.0"] * 24 + ["features.1.0.conv2"] * 12 + ["features.1.1.conv2"] * 12 + ["features.1.2.conv2"] * 12
    assert list(pos[24:36]) == list(range(12))


def test_depthwise_ties_input_and_output():
    g = groups_of(models.mobilenet_v2())
    expand = g["features.2.conv.0.0"]  # 1x1 expansion 16 -> 96, then depthwise, then project
    assert expand.width == 96 and expand.prunable
    assert Member("features.2.conv.1.0", "channel") in expand.members
    assert Member("features.2.conv.2.0", "in") in expand.members


def test_squeeze_excitation_gate_joins_the_gated_channels():
    g = groups_of(TV_MODELS["mobilenet_v3_tiny"]())
    expand = g["features.3.block.0.0"]  # 24 -> 72 expansion of the block with SE
    assert expand.prunable
    assert Member("features.3.block.2.fc2", "out") in expand.members  # gate channels
    assert Member("features.3.block.2.fc1", "in") in expand.members
    assert g["features.3.block.2.fc1"].prunable  # the squeeze width is its own group


def test_se_written_with_linear_and_view():
    g = groups_of(TV_MODELS["spatial_flatten"]())
    assert Member("se.fc2", "out") in g["conv1.0"].members and g["conv1.0"].prunable


def test_flatten_into_linear_gives_each_channel_a_block_of_features():
    g = groups_of(TV_MODELS["spatial_flatten"]())
    rec = next(r for r in g.records.values() if r.module == "fc1")
    gidx, pos = g.locate(rec.in_ids)
    assert len(rec.in_ids) == 128 and {g.groups[i].name for i in gidx} == {"conv3.0"}
    assert list(pos) == [c for c in range(8) for _ in range(16)]


def test_channel_shuffles_and_splits_are_replayed_as_gathers():
    g = groups_of(TV_MODELS["shufflenet_v2_tiny"]())
    assert all(x.prunable for x in g if x.name not in ("x", "fc"))
    ends = {(v.start, v.end) for v in g.gathers.values()}
    assert ("cat", "view_1") in ends  # the first unit's shuffle: a permutation of the concatenation
    assert {("view_1", "getitem_4"), ("view_1", "getitem_5")} <= ends  # the second unit's split of it


class _PixelShuffle(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 8, 1), nn.Conv2d(2, 2, 1)

    def forward(self, x):
        y = self.a(x)
        n, c, h, w = y.size()
        y = y.view(n, c // 4, 2, 2, h, w).permute(0, 1, 4, 2, 5, 3).reshape(n, c // 4, 2 * h, 2 * w)
        return self.b(y).mean((2, 3))


def test_a_move_of_channels_into_space_is_not_a_gather_and_keeps_them_whole_with_the_reason():
    g = groups_of(_PixelShuffle(), (1, 1, 4, 4))
    assert not g["a"].prunable and "vary over space" in g["a"].reason  # the first reason found is given
    assert not g.gathers


def test_grouped_conv_groups_come_in_one_slice_per_conv_group():
    g = groups_of(TV_MODELS["resnext_tiny"]())
    assert (g["reduce.0"].slices, g["grouped.0"].slices) == (4, 4)  # its input and output groups
    assert g["reduce.0"].prunable and g["grouped.0"].prunable and g["stem.0"].slices == 1
    assert g.slices() == {"reduce.0": 4, "grouped.0": 4}
    assert g.plan({"reduce.0": 8}).keep["reduce.0"] == (0, 1, 8, 9, 16, 17, 24, 25)
    r = groups_of(TV_MODELS["regnet_x_tiny"]())
    assert r.slices() == {"trunk.0.f.0.0": 3, "trunk.0.f.1.0": 3, "trunk.1.f.0.0": 3, "trunk.1.f.1.0": 3,
                          "trunk.2.f.0.0": 4, "trunk.2.f.1.0": 4}
    assert all(x.prunable for x in r.groups if x.slices > 1)


class _GroupedOverConcat(nn.Module):
    """A grouped conv reading two groups at once, and a depthwise conv with a channel multiplier."""

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(1, 4, 1), nn.Conv2d(1, 4, 1)
        self.grouped = nn.Conv2d(8, 8, 3, padding=1, groups=2)
        self.c = nn.Conv2d(8, 4, 1)
        self.multiplier = nn.Conv2d(4, 8, 3, padding=1, groups=4)

    def forward(self, x):
        y = self.grouped(torch.cat([self.a(x), self.b(x)], 1))
        return self.multiplier(self.c(y)).mean((2, 3))


def test_grouped_conv_over_several_groups_or_one_channel_per_group_is_kept_whole_with_the_reason():
    g = groups_of(_GroupedOverConcat(), (1, 1, 8, 8))
    for name in ("a", "b"):
        assert not g[name].prunable and "reads or writes channels of several groups" in g[name].reason
    assert g["grouped"].prunable and g["grouped"].slices == 2
    assert not g["c"].prunable and "one channel of this group per conv group" in g["c"].reason


def test_functional_convs_on_parameters_are_layers_and_rebuild_slices_their_parameters():
    from hakd.passes.probes import insert_probes
    from hakd.passes.rebuild import rebuild

    model = TV_MODELS["functional_convs"]()
    gm = trace(model, torch.zeros(1, 3, 32, 32))
    g = find_groups(gm)
    assert [x.name for x in g.prunable()] == ["w1", "w3"] and g.conv_coverage() == (56, 56)
    assert {m.module for m in g["w1"].members} == {"w1", "bn1", "block", "w3"}  # as hakd.cost names their kernels
    small = rebuild(gm, g, g.plan({"w1": 9, "w3": 11}))
    assert (small.w1.shape, small.b1.shape, small.block.weight.shape, small.fc_w.shape) == (
        (9, 3, 3, 3), (9,), (9, 9, 3, 3), (10, 11))
    assert {grp for p in insert_probes(gm, g).probes for grp in p.index} == {"w1", "w3"}  # Fisher sees both
    from hakd.passes.counts import count

    assert count(gm, (1, 3, 32, 32))[1] == 16 * 16 * (16 * 27 + 16 * 144 + 24 * 16) + 10 * 24  # functional MACs count


class _ComputedWeight(nn.Module):
    def __init__(self):
        super().__init__()
        self.w = nn.Parameter(torch.randn(4, 4, 1, 1))
        self.a = nn.Conv2d(1, 4, 1)

    def forward(self, x):
        return torch.nn.functional.conv2d(self.a(x), self.w * 2).mean((2, 3))


def test_a_functional_conv_on_computed_weights_keeps_its_input_whole_with_the_reason():
    g = groups_of(_ComputedWeight(), (1, 1, 4, 4))
    assert not g["a"].prunable and "weights are computed" in g["a"].reason


def test_inception_branches_are_separate_groups():
    g = groups_of(TV_MODELS["googlenet_tiny"]())
    names = [x.name for x in g.prunable()]
    for branch in ("inception3a.branch1.0", "inception3a.branch2.0.0", "inception3a.branch2.1.0", "inception3a.branch4.1.0"):
        assert branch in names


class UnknownOp(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3)
        self.b = nn.Conv2d(8, 8, 3)
        self.c = nn.Conv2d(8, 4, 1)

    def forward(self, x):
        y = torch.softmax(self.a(x), dim=1)  # mixes channels: zeroing one changes the others
        return self.c(torch.cumsum(self.b(y), 1))


def test_unknown_operations_block_the_groups_they_touch():
    g = groups_of(UnknownOp(), (1, 3, 16, 16))
    assert not g["a"].prunable and "softmax" in g["a"].reason and "%softmax" in g["a"].reason
    assert not g["b"].prunable and "cumsum" in g["b"].reason


def test_find_groups_needs_a_traced_module():
    gm = torch.fx.symbolic_trace(models.resnet20())
    with pytest.raises(GroupError, match="hakd.passes.trace.trace"):
        find_groups(gm)


@pytest.mark.parametrize("name", ["resnet20", "mobilenet_v2", "densenet40"])
def test_golden_groups(name):
    """Groups checked by hand once and recorded; a change here changes what hakd prunes."""
    got = groups_of(models.create(name)).to_dict()
    path = GOLDEN / f"{name}_groups.json"
    assert got == json.loads(path.read_text()), f"groups of {name} changed; if intended, regenerate {path}"


class SharedConv(nn.Module):
    """One conv module called twice: its input channels at both calls must be pruned together."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 8, 3, padding=1)
        self.b = nn.Conv2d(3, 8, 3, padding=1)
        self.shared = nn.Conv2d(8, 6, 1)
        self.head = nn.Conv2d(12, 4, 1)

    def forward(self, x):
        return self.head(torch.cat([self.shared(self.a(x)), self.shared(self.b(x))], 1))


def test_a_module_called_twice_ties_its_inputs():
    from hakd.passes.rebuild import rebuild, zero_pruned
    from hakd.plan import PrunePlan

    gm = trace(SharedConv().eval(), torch.zeros(1, 3, 8, 8))
    g = find_groups(gm)
    assert Member("b", "out") in g["a"].members  # a's and b's outputs both feed the shared weights
    plan = PrunePlan({"a": (0, 2, 5), "shared": (1, 4)}, g.widths())
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(rebuild(gm, g, plan)(x), zero_pruned(gm, g, plan, x), atol=1e-6, rtol=0)


def test_timm_and_torchvision_blocks_prune_as_far_as_their_structure_allows():
    from tests.passes.timm_models import TIMM_MODELS

    for name, model in TIMM_MODELS.items():
        g = groups_of(model())
        pruned, total = g.conv_coverage()
        assert pruned == total > 0, (name, [(x.name, x.reason) for x in g if not x.prunable])


def test_a_same_padding_conv_subclass_is_a_layer_and_can_be_traced_into_on_request():
    from hakd.errors import TraceError
    from tests.passes.timm_models import Conv2dSame, TimmEfficientNetLiteTiny

    gm = trace(TimmEfficientNetLiteTiny(), torch.zeros(1, 3, 32, 32))
    stem = next(n for n in gm.graph.nodes if n.target == "conv_stem")
    assert stem.op == "call_module"  # kept whole: hakd prunes it as the conv it is
    g = find_groups(gm)
    assert g["conv_stem"].prunable and Member("bn1", "channel") in g["conv_stem"].members
    with pytest.raises(TraceError, match="Conv2dSame"):  # its forward pads by the input's size: untraceable
        trace(TimmEfficientNetLiteTiny(), torch.zeros(1, 3, 32, 32), trace_into=[Conv2dSame])


class FunctionalStochasticDepth(nn.Module):
    """A residual through torchvision's fx-wrapped ``stochastic_depth`` function, called directly."""

    def __init__(self):
        super().__init__()
        self.stem, self.body, self.head = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 3, padding=1), nn.Conv2d(8, 4, 1)

    def forward(self, x):
        from tests.passes.timm_models import stochastic_depth

        x = self.stem(x)
        return self.head(x + stochastic_depth(self.body(x), 0.2, "row", self.training))


def test_stochastic_depth_is_channel_wise_as_a_function_and_as_a_module():
    gm = trace(FunctionalStochasticDepth(), torch.zeros(1, 3, 8, 8))
    assert any(n.op == "call_function" and n.target.__name__ == "stochastic_depth" for n in gm.graph.nodes)
    g = find_groups(gm)
    assert g["stem"].prunable and Member("body", "out") in g["stem"].members  # the residual stream stays one group
    assert g.conv_coverage() == (16, 16)
