"""Wide ResNets (Zagoruyko and Komodakis 2016): WRN-depth-k, pre-activation blocks.

>>> import torch
>>> wrn16_2(in_channels=1)(torch.zeros(1, 1, 28, 28)).shape
torch.Size([1, 10])
"""

from torch import nn

__all__ = ["WideBlock", "WideResNet", "wrn16_2", "wrn40_2"]


class WideBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.shortcut = None
        if stride != 1 or cin != cout:
            self.shortcut = nn.Conv2d(cin, cout, 1, stride, 0, bias=False)

    def forward(self, x):
        o = self.relu1(self.bn1(x))
        y = self.conv2(self.relu2(self.bn2(self.conv1(o))))
        return y + (x if self.shortcut is None else self.shortcut(o))


class WideResNet(nn.Module):
    def __init__(self, depth: int, k: int, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"WRN depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        widths = [16, 16 * k, 32 * k, 64 * k]
        self.conv1 = nn.Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        blocks, cin = [], widths[0]
        for stage, width in enumerate(widths[1:]):
            for i in range(n):
                blocks.append(WideBlock(cin, width, 2 if stage > 0 and i == 0 else 1))
                cin = width
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(cin)
        self.relu = nn.ReLU(inplace=True)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu(self.bn(self.blocks(self.conv1(x))))
        return self.fc(self.pool(x).flatten(1))


def wrn16_2(in_channels: int = 3, num_classes: int = 10) -> WideResNet:
    return WideResNet(16, 2, in_channels, num_classes)


def wrn40_2(in_channels: int = 3, num_classes: int = 10) -> WideResNet:
    return WideResNet(40, 2, in_channels, num_classes)
