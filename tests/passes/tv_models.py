"""Small models with the channel patterns torchvision ships, written here as torchvision writes them.

Each is tiny (fast to trace and run) but has the real structure: MobileNetV3's SE
with hardsigmoid gates and hardswish, ShuffleNetV2's channel split and shuffle,
GoogLeNet's Inception concatenations, EfficientNet's MBConv with SE and SiLU,
ResNeXt's grouped convs, and an SE written with Linear layers and view.
"""

import torch
import torch.nn.functional as F
from torch import nn


def cbr(cin, cout, k=3, s=1, g=1, act=nn.ReLU):
    layers = [nn.Conv2d(cin, cout, k, s, k // 2, groups=g, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, act(inplace=True)) if act else nn.Sequential(*layers)


class SqueezeExcitation(nn.Module):
    """torchvision.ops.SqueezeExcitation: pool, 1x1 conv, act, 1x1 conv, gate."""

    def __init__(self, channels, squeeze, gate=nn.Hardsigmoid, act=nn.ReLU):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, squeeze, 1)
        self.fc2 = nn.Conv2d(squeeze, channels, 1)
        self.activation = act()
        self.scale_activation = gate()

    def forward(self, x):
        scale = self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x)))))
        return scale * x


class V3Block(nn.Module):
    def __init__(self, cin, exp, cout, stride, se):
        super().__init__()
        layers = [cbr(cin, exp, 1, act=nn.Hardswish), cbr(exp, exp, 3, stride, g=exp, act=nn.Hardswish)]
        if se:
            layers.append(SqueezeExcitation(exp, max(8, exp // 4)))
        layers.append(cbr(exp, cout, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return y + x if self.use_res else y


class MobileNetV3Tiny(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(cbr(in_channels, 16, 3, 2, act=nn.Hardswish), V3Block(16, 16, 16, 1, True),
                                      V3Block(16, 48, 24, 2, False), V3Block(24, 72, 24, 1, True), cbr(24, 96, 1, act=nn.Hardswish))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(96, 64), nn.Hardswish(), nn.Dropout(0.2), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def channel_shuffle(x, groups: int):
    b, c, h, w = x.size()
    x = x.view(b, groups, c // groups, h, w)
    x = torch.transpose(x, 1, 2).contiguous()
    return x.view(b, -1, h, w)


class ShuffleUnit(nn.Module):
    """torchvision's InvertedResidual of ShuffleNetV2."""

    def __init__(self, cin, cout, stride):
        super().__init__()
        self.stride = stride
        half = cout // 2
        if stride > 1:
            self.branch1 = nn.Sequential(cbr(cin, cin, 3, stride, g=cin, act=None), cbr(cin, half, 1))
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(cbr(cin if stride > 1 else half, half, 1), cbr(half, half, 3, stride, g=half, act=None),
                                     cbr(half, half, 1))

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNetV2Tiny(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv1 = cbr(in_channels, 24, 3, 2)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.stage2 = nn.Sequential(ShuffleUnit(24, 48, 2), ShuffleUnit(48, 48, 1))
        self.conv5 = cbr(48, 64, 1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.conv5(self.stage2(self.maxpool(self.conv1(x))))
        return self.fc(x.mean([2, 3]))


class Inception(nn.Module):
    """torchvision's GoogLeNet Inception block: four branches concatenated."""

    def __init__(self, cin, ch1, ch3r, ch3, ch5r, ch5, pool_proj):
        super().__init__()
        self.branch1 = cbr(cin, ch1, 1)
        self.branch2 = nn.Sequential(cbr(cin, ch3r, 1), cbr(ch3r, ch3, 3))
        self.branch3 = nn.Sequential(cbr(cin, ch5r, 1), cbr(ch5r, ch5, 3))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), cbr(cin, pool_proj, 1))

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


class GoogLeNetTiny(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv1 = cbr(in_channels, 32, 3)
        self.inception3a = Inception(32, 16, 12, 16, 4, 8, 8)
        self.inception3b = Inception(48, 16, 16, 24, 4, 12, 12)
        self.maxpool = nn.MaxPool2d(3, 2, ceil_mode=True)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.maxpool(self.inception3b(self.inception3a(self.conv1(x))))
        return self.fc(self.dropout(torch.flatten(self.avgpool(x), 1)))


class MBConv(nn.Module):
    """EfficientNet's MBConv: expand, depthwise, SE (SiLU + sigmoid), project, residual."""

    def __init__(self, cin, cout, expand, stride):
        super().__init__()
        exp = cin * expand
        self.block = nn.Sequential(cbr(cin, exp, 1, act=nn.SiLU), cbr(exp, exp, 3, stride, g=exp, act=nn.SiLU),
                                   SqueezeExcitation(exp, max(1, cin // 4), gate=nn.Sigmoid, act=nn.SiLU),
                                   cbr(exp, cout, 1, act=None))
        self.use_res = stride == 1 and cin == cout

    def forward(self, x):
        y = self.block(x)
        return y + x if self.use_res else y


class EfficientNetTiny(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(cbr(in_channels, 16, 3, 2, act=nn.SiLU), MBConv(16, 16, 1, 1), MBConv(16, 24, 4, 2),
                                      MBConv(24, 24, 4, 1), cbr(24, 64, 1, act=nn.SiLU))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


class ResNeXtTiny(nn.Module):
    """A ResNeXt bottleneck: grouped 3x3 conv (cardinality 4) inside a residual block."""

    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.stem = cbr(in_channels, 32, 3)
        self.reduce = cbr(32, 32, 1)
        self.grouped = cbr(32, 32, 3, g=4)
        self.expand = cbr(32, 32, 1, act=None)
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = F.relu(x + self.expand(self.grouped(self.reduce(x))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


class RegNetBlock(nn.Module):
    """torchvision's ResBottleneckBlock of RegNet-X: 1x1, grouped 3x3 (group width 8), 1x1, with a
    projection shortcut where the shape changes."""

    def __init__(self, cin, cout, stride, group_width=8):
        super().__init__()
        self.proj = cbr(cin, cout, 1, stride, act=None) if stride != 1 or cin != cout else None
        self.f = nn.Sequential(cbr(cin, cout, 1), cbr(cout, cout, 3, stride, g=cout // group_width), cbr(cout, cout, 1, act=None))
        self.activation = nn.ReLU()

    def forward(self, x):
        shortcut = x if self.proj is None else self.proj(x)
        return self.activation(shortcut + self.f(x))


class RegNetTiny(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.stem = cbr(in_channels, 16, 3, 2)
        self.trunk = nn.Sequential(RegNetBlock(16, 24, 2), RegNetBlock(24, 24, 1), RegNetBlock(24, 32, 2))
        self.fc = nn.Linear(32, num_classes)

    def forward(self, x):
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(self.trunk(self.stem(x)), 1), 1))


class LinearSE(nn.Module):
    """SE written with Linear layers and view, as many repositories write it."""

    def __init__(self, c, r=4):
        super().__init__()
        self.fc1 = nn.Linear(c, c // r)
        self.fc2 = nn.Linear(c // r, c)

    def forward(self, x):
        b, c, _, _ = x.size()
        s = torch.sigmoid(self.fc2(F.relu(self.fc1(x.mean((2, 3))))))
        return x * s.view(b, c, 1, 1)


class SpatialFlattenNet(nn.Module):
    """Flatten of a 4x4 map into a Linear layer (each channel owns 16 features), SE via Linear, upsampling."""

    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv1 = cbr(in_channels, 16, 3, 2)
        self.se = LinearSE(16)
        self.conv2 = cbr(16, 12, 3, 2)
        self.up = nn.Upsample(scale_factor=2)
        self.conv3 = cbr(12, 8, 3, 2)
        self.pool = nn.AdaptiveAvgPool2d(4)
        self.fc1 = nn.Linear(8 * 16, 32)
        self.fc2 = nn.Linear(32, num_classes)

    def forward(self, x):
        x = self.conv3(self.up(self.conv2(self.se(self.conv1(x)))))
        x = self.pool(x).view(x.size(0), -1)
        return self.fc2(F.relu(self.fc1(x)))


class FunctionalNet(nn.Module):
    """Convs and a classifier written with F.conv2d / F.linear on parameters, a residual between them."""

    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.w1 = nn.Parameter(torch.randn(16, in_channels, 3, 3) * 0.2)
        self.b1 = nn.Parameter(torch.randn(16) * 0.1)
        self.bn1 = nn.BatchNorm2d(16)
        self.block = nn.Module()
        self.block.weight = nn.Parameter(torch.randn(16, 16, 3, 3) * 0.1)
        self.w3 = nn.Parameter(torch.randn(24, 16, 1, 1) * 0.2)
        self.fc_w = nn.Parameter(torch.randn(num_classes, 24) * 0.2)

    def forward(self, x):
        x = F.relu(self.bn1(F.conv2d(x, self.w1, self.b1, stride=2, padding=1)))
        x = F.relu(x + F.conv2d(x, self.block.weight, padding=1))
        x = F.relu(F.conv2d(x, self.w3))
        return F.linear(x.mean((2, 3)), self.fc_w)


TV_MODELS = {
    "mobilenet_v3_tiny": MobileNetV3Tiny,
    "shufflenet_v2_tiny": ShuffleNetV2Tiny,
    "googlenet_tiny": GoogLeNetTiny,
    "efficientnet_tiny": EfficientNetTiny,
    "resnext_tiny": ResNeXtTiny,
    "regnet_x_tiny": RegNetTiny,
    "spatial_flatten": SpatialFlattenNet,
    "functional_convs": FunctionalNet,
}
