"""Tiny models and quick measurement settings for the cost-model tests."""

import pytest
import torch
from torch import nn

from hakd.cost.measure import MeasureConfig
from hakd.passes.groups import find_groups
from hakd.passes.trace import trace

QUICK = MeasureConfig(number=2, repeat=2, min_repeat_ms=1, cold_repeat=3, threads=1, retries=1, retry_wait_s=0.2, session_timeout_s=30,
                      connect_timeout_s=5)


class TinyRes(nn.Module):
    """conv-BN-ReLU, a residual block, a depthwise conv, pooling and a classifier."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.conv1 = nn.Sequential(nn.Conv2d(16, 24, 3, padding=1, bias=False), nn.BatchNorm2d(24), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(24, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16))
        self.dw = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.head = nn.Linear(16, 10)

    def forward(self, x):
        x = self.stem(x)
        x = torch.relu(x + self.conv2(self.conv1(x)))
        return self.head(self.dw(x).mean((2, 3)))


def randomised(model):
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
    return model.eval()


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    gm = trace(randomised(TinyRes()), torch.zeros(1, 3, 16, 16))
    return gm, find_groups(gm)
