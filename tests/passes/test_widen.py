"""widen: zero channels leave the function unchanged, on every zoo model."""

import pytest
import torch
from torch import nn

from hakd import models
from hakd.errors import GroupError
from hakd.passes.groups import find_groups
from hakd.passes.trace import trace
from hakd.passes.widen import widen


def calibrated(name):
    torch.manual_seed(0)
    model = models.create(name).train()
    with torch.no_grad():
        model(torch.randn(8, 3, 32, 32))
    return model.eval()


@pytest.mark.parametrize("name", ["resnet20", "wrn16_2", "mobilenet_v2", "densenet40", "vgg11"])
def test_widened_models_compute_the_same_at_their_new_widths(name):
    gm = trace(calibrated(name), torch.zeros(1, 3, 32, 32))
    groups = find_groups(gm)
    g = torch.Generator().manual_seed(1)
    widths = {grp.name: grp.width + int(torch.randint(0, 9, (1,), generator=g)) for grp in groups.prunable()}
    wide = widen(gm, groups, widths)
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(wide(x), gm(x), atol=1e-5, rtol=1e-5)
    regrouped = find_groups(trace(wide, torch.zeros(1, 3, 32, 32)))
    assert {n: regrouped[n].width for n in widths} == widths


def test_what_cannot_be_widened_is_refused():
    class Flat(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.fc = nn.Conv2d(1, 4, 3, padding=1), nn.Linear(4 * 4 * 4, 2)

        def forward(self, x):
            return self.fc(torch.flatten(self.conv(x), 1))

    gm = trace(Flat(), torch.zeros(1, 1, 4, 4))
    groups = find_groups(gm)
    with pytest.raises(GroupError, match="more than once per sample"):
        widen(gm, groups, {"conv": 6})
    with pytest.raises(GroupError, match="only adds channels"):
        widen(gm, groups, {"conv": 2})
    from tests.passes.tv_models import TV_MODELS

    gm = trace(TV_MODELS["shufflenet_v2_tiny"](), torch.zeros(1, 3, 32, 32))
    groups = find_groups(gm)
    with pytest.raises(GroupError, match="channel shuffle or split"):
        widen(gm, groups, {"stage2.0.branch2.2.0": 32})
    with pytest.raises(GroupError, match="grouped conv"):
        widen(*(lambda m: (m, find_groups(m)))(trace(TV_MODELS["resnext_tiny"](), torch.zeros(1, 3, 32, 32))), {"reduce.0": 36})
