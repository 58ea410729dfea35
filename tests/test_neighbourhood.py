"""The part of a model around a group lowers to the kernels the whole model runs on the group's layers."""

import functools
import numpy as np
import pytest
import torch
from torch import fx, nn

from hakd.cost.lower import lower
from hakd.models import densenet40, resnet20
from hakd.errors import PlanError
from hakd.passes.groups import META_KEY, find_groups
from hakd.passes.neighbourhood import neighbourhood
from hakd.passes.rebuild import rebuild, rebuild_part
from hakd.passes.trace import trace
from hakd.sweep import _at_width, _member_calls, _models_for, group_modules
from tests.passes import tv_models as tv


class SizeReader(nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv2d(3, 8, 3, padding=1), nn.Conv2d(8, 8, 1)

    def forward(self, x):
        y = self.a(x)
        return self.b(y).reshape(y.size(0), -1)  # y.size(0) is an int read from outside b's neighbourhood


def test_inputs_are_placeholders_with_shapes_and_values_read_outside_are_outputs():
    gm = trace(resnet20(), torch.zeros(1, 3, 32, 32))
    part = neighbourhood(gm, {"layers.3.conv1"}, hops=2)
    inputs = [n for n in part.graph.nodes if n.op == "placeholder"]
    assert [tuple(n.meta["tensor_meta"].shape) for n in inputs] == [(1, 16, 32, 32)] * len(inputs)
    outs = part(*[torch.randn(n.meta["tensor_meta"].shape) for n in inputs])
    assert isinstance(outs, tuple) and all(isinstance(o, torch.Tensor) for o in outs)
    assert neighbourhood(gm, {"no.such.module"}) is None


def test_a_non_tensor_input_gives_no_part():
    gm = trace(SizeReader(), torch.zeros(1, 3, 8, 8))
    assert neighbourhood(gm, {"b"}, hops=1) is None
    assert isinstance(neighbourhood(gm, {"a"}, hops=1), fx.GraphModule)


class Activations(fx.Interpreter):
    """Runs a model and keeps every node's value, by node name (a copy: ReLUs run in place)."""

    def run_node(self, n):
        value = super().run_node(n)
        self.values[n.name] = value.clone() if isinstance(value, torch.Tensor) else value
        return value

    def of(self, x):
        self.values = {}
        self.run(x)
        return self.values


@pytest.mark.parametrize("make, shape, group", [(resnet20, (1, 3, 32, 32), "layers.3.conv1"),
                                                (lambda: densenet40(in_channels=1), (1, 1, 28, 28), None),
                                                (tv.MobileNetV3Tiny, (1, 3, 32, 32), None)])
def test_a_part_rebuilt_alone_computes_what_the_whole_rebuilt_model_computes_there(make, shape, group):
    torch.manual_seed(0)
    gm = trace(make().eval(), torch.zeros(shape))
    groups = find_groups(gm)
    group = group or groups.prunable()[2].name
    rng = np.random.default_rng(0)
    plan = groups.plan({g.name: int(rng.integers(1, g.width // g.slices + 1)) * g.slices for g in groups.prunable()})
    cut = neighbourhood(gm, group_modules(groups, group))
    part = rebuild_part(cut, groups, plan)
    whole = rebuild(gm, groups, plan).eval()
    values = Activations(whole).of(torch.randn(shape))
    inputs = [n.name for n in part.graph.nodes if n.op == "placeholder"]
    assert [tuple(n.meta["tensor_meta"].shape) for n in part.graph.nodes if n.op == "placeholder"] == \
        [tuple(values[name].shape) for name in inputs]  # its inputs' shapes as the plan makes them
    outputs = [n.name for n in cut.graph.nodes if n.op != "output" and any(u.op == "output" for u in n.users)]
    got = part.eval()(*[values[name] for name in inputs])
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(outputs)
    for name, value in zip(outputs, got):
        torch.testing.assert_close(value, values[name], rtol=1e-5, atol=1e-5)
    for name, p in part.named_parameters():  # its layers sliced as the whole model's
        torch.testing.assert_close(p, whole.get_parameter(name), rtol=0, atol=0)


def test_a_part_whose_input_shape_cannot_be_told_is_refused():
    gm = trace(resnet20(), torch.zeros(1, 3, 32, 32))
    groups = find_groups(gm)
    cut = neighbourhood(gm, {"layers.3.conv1"}, hops=1)
    for n in cut.graph.nodes:
        n.meta.pop(META_KEY, None)
    with pytest.raises(PlanError, match="cannot be told"):
        rebuild_part(cut, groups, groups.plan())


@pytest.mark.slow
@pytest.mark.parametrize("make, shape, paths", [(lambda: densenet40(in_channels=1), (1, 1, 28, 28), {"part"}),
                                                (tv.ShuffleNetV2Tiny, (1, 3, 32, 32), {"part", "part_of_whole"}),
                                                (tv.RegNetTiny, (1, 3, 32, 32), {"part"}),
                                                (tv.MobileNetV3Tiny, (1, 3, 32, 32), {"part"})])
@pytest.mark.parametrize("block", [0, 16])  # plain NCHW; blocked channels (a cut input is read blocked)
def test_every_group_lowers_from_its_part_to_the_whole_models_kernels(make, shape, paths, block):
    low = functools.partial(lower, block=block)
    gm = trace(make().eval(), torch.zeros(shape))
    groups = find_groups(gm)
    widths = groups.widths()
    at_plan = low(rebuild(gm, groups, groups.plan(widths)))  # the whole model at the plan's widths
    for g in groups.prunable()[:6]:
        at = _models_for(gm, groups, widths, g.name, at_plan, low)
        assert at.__name__ in paths, g.name  # rebuilt alone; a shuffle's groups from the whole model rebuilt
        width = max(g.slices, widths[g.name] - 3 * g.slices)  # another width than the one checked
        members = group_modules(groups, g.name)
        whole = low(_at_width(gm, groups, widths, g.name, width))
        assert _member_calls(low(at(width)), members) == _member_calls(whole, members)
