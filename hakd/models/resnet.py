"""CIFAR-style ResNets (He et al. 2016, section 4.2): 6n+2 layers, widths 16-32-64.

Downsampling shortcuts are 1x1 conv + BN (torchvision's convention), which keeps
every channel flow explicit for hakd's graph passes.

>>> import torch
>>> resnet20(num_classes=10)(torch.zeros(1, 3, 32, 32)).shape
torch.Size([1, 10])
"""

from torch import nn

__all__ = ["BasicBlock", "CifarResNet", "resnet20", "resnet56"]


def conv_bn(cin: int, cout: int, kernel: int, stride: int = 1) -> list:
    return [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1, self.bn1 = conv_bn(cin, cout, 3, stride)
        self.relu = nn.ReLU(inplace=True)
        self.conv2, self.bn2 = conv_bn(cout, cout, 3)
        self.shortcut = nn.Sequential()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(*conv_bn(cin, cout, 1, stride))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    def __init__(self, depth: int, in_channels: int = 3, num_classes: int = 10, widths=(16, 32, 64)):
        super().__init__()
        if (depth - 2) % 6:
            raise ValueError(f"CIFAR ResNet depth must be 6n+2, got {depth}")
        n = (depth - 2) // 6
        self.conv1, self.bn1 = conv_bn(in_channels, widths[0], 3)
        self.relu = nn.ReLU(inplace=True)
        blocks, cin = [], widths[0]
        for stage, width in enumerate(widths):
            for i in range(n):
                blocks.append(BasicBlock(cin, width, 2 if stage > 0 and i == 0 else 1))
                cin = width
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, x):
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.pool(self.layers(x))
        return self.fc(x.flatten(1))


def resnet20(in_channels: int = 3, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(20, in_channels, num_classes)


def resnet56(in_channels: int = 3, num_classes: int = 10) -> CifarResNet:
    return CifarResNet(56, in_channels, num_classes)
