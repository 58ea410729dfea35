"""MobileNet v1 and v2 in their CIFAR layouts (first layers at stride 1).

>>> import torch
>>> mobilenet_v2(in_channels=1)(torch.zeros(1, 1, 28, 28)).shape
torch.Size([1, 10])
"""

from torch import nn

__all__ = ["MobileNetV1", "MobileNetV2", "InvertedResidual", "mobilenet_v1", "mobilenet_v2"]


def conv_bn_relu(cin, cout, kernel=3, stride=1, groups=1, relu=nn.ReLU) -> nn.Sequential:
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if relu is not None:
        layers.append(relu(inplace=True))
    return nn.Sequential(*layers)


class MobileNetV1(nn.Module):
    # (out channels, stride) of each depthwise-separable block
    CFG = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        layers, cin = [conv_bn_relu(in_channels, 32)], 32
        for cout, stride in self.CFG:
            layers.append(nn.Sequential(conv_bn_relu(cin, cin, 3, stride, groups=cin), conv_bn_relu(cin, cout, 1)))
            cin = cout
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers = [] if expand == 1 else [conv_bn_relu(cin, hidden, 1, relu=nn.ReLU6)]
        layers += [conv_bn_relu(hidden, hidden, 3, stride, groups=hidden, relu=nn.ReLU6), conv_bn_relu(hidden, cout, 1, relu=None)]
        self.conv = nn.Sequential(*layers)
        self.use_residual = stride == 1 and cin == cout

    def forward(self, x):
        return x + self.conv(x) if self.use_residual else self.conv(x)


class MobileNetV2(nn.Module):
    # (expansion, out channels, repeats, stride); strides of the first two stages are 1 for 32x32 inputs
    CFG = [(1, 16, 1, 1), (6, 24, 2, 1), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]

    def __init__(self, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        layers, cin = [conv_bn_relu(in_channels, 32, relu=nn.ReLU6)], 32
        for expand, cout, repeats, stride in self.CFG:
            for i in range(repeats):
                layers.append(InvertedResidual(cin, cout, stride if i == 0 else 1, expand))
                cin = cout
        layers.append(conv_bn_relu(cin, 1280, 1, relu=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(1280, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def mobilenet_v1(in_channels: int = 3, num_classes: int = 10) -> MobileNetV1:
    return MobileNetV1(in_channels, num_classes)


def mobilenet_v2(in_channels: int = 3, num_classes: int = 10) -> MobileNetV2:
    return MobileNetV2(in_channels, num_classes)
