"""The part of a model around a group lowers to the kernels the whole model runs on the group's layers."""

import pytest
import torch
from torch import fx, nn

from hakd.cost.lower import lower
from hakd.models import densenet40, resnet20
from hakd.passes.groups import find_groups
from hakd.passes.neighbourhood import neighbourhood
from hakd.passes.rebuild import rebuild
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


@pytest.mark.slow
@pytest.mark.parametrize("make, shape", [(lambda: densenet40(in_channels=1), (1, 1, 28, 28)),
                                         (tv.ShuffleNetV2Tiny, (1, 3, 32, 32)), (tv.RegNetTiny, (1, 3, 32, 32)),
                                         (tv.MobileNetV3Tiny, (1, 3, 32, 32))])
def test_every_group_lowers_from_its_part_to_the_whole_models_kernels(make, shape):
    gm = trace(make().eval(), torch.zeros(shape))
    groups = find_groups(gm)
    widths = groups.widths()
    at_plan = lower(rebuild(gm, groups, groups.plan(widths)))  # the whole model at the plan's widths
    for g in groups.prunable()[:6]:
        at = _models_for(gm, groups, widths, g.name, at_plan)
        assert at.__name__ == "part", g.name
        width = max(g.slices, widths[g.name] - 3 * g.slices)  # another width than the one checked
        members = group_modules(groups, g.name)
        whole = lower(_at_width(gm, groups, widths, g.name, width))
        assert _member_calls(lower(at(width)), members) == _member_calls(whole, members)
