"""DenseNet-BC for CIFAR (Huang et al. 2017): bottleneck layers, compression 0.5.

Depth 40 and 100 with growth rate k=12; each dense block concatenates every
earlier feature map, written as torchvision writes it.

>>> import torch
>>> densenet40(in_channels=1)(torch.zeros(1, 1, 28, 28)).shape
torch.Size([1, 10])
"""

import torch
from torch import nn

__all__ = ["DenseLayer", "DenseBlock", "Transition", "DenseNetBC", "densenet40", "densenet100"]


class DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(cin, 4 * growth, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(4 * growth)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features):
        x = torch.cat(features, 1)
        return self.conv2(self.relu2(self.bn2(self.conv1(self.relu1(self.bn1(x))))))


class DenseBlock(nn.ModuleList):
    def __init__(self, layers: int, cin: int, growth: int):
        super().__init__(DenseLayer(cin + i * growth, growth) for i in range(layers))

    def forward(self, x):
        features = [x]
        for layer in self:
            features.append(layer(features))
        return torch.cat(features, 1)


class Transition(nn.Sequential):
    def __init__(self, cin: int, cout: int):
        super().__init__(nn.BatchNorm2d(cin), nn.ReLU(inplace=True), nn.Conv2d(cin, cout, 1, bias=False), nn.AvgPool2d(2))


class DenseNetBC(nn.Module):
    def __init__(self, depth: int, growth: int = 12, in_channels: int = 3, num_classes: int = 10, reduction: float = 0.5):
        super().__init__()
        if (depth - 4) % 6:
            raise ValueError(f"DenseNet-BC depth must be 6n+4, got {depth}")
        n = (depth - 4) // 6
        cin = 2 * growth
        layers = [nn.Conv2d(in_channels, cin, 3, padding=1, bias=False)]
        for i in range(3):
            layers.append(DenseBlock(n, cin, growth))
            cin += n * growth
            if i < 2:
                cout = int(cin * reduction)
                layers.append(Transition(cin, cout))
                cin = cout
        layers += [nn.BatchNorm2d(cin), nn.ReLU(inplace=True)]
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def densenet40(in_channels: int = 3, num_classes: int = 10) -> DenseNetBC:
    return DenseNetBC(40, 12, in_channels, num_classes)


def densenet100(in_channels: int = 3, num_classes: int = 10) -> DenseNetBC:
    return DenseNetBC(100, 12, in_channels, num_classes)
