"""Small models built from timm's and torchvision's blocks, written as their authors write them.

The packages do not install beside the CPU torch here, so the blocks are written out:
timm's "same padding" conv (a Conv2d subclass whose forward pads by its input's size and
calls ``F.conv2d``), timm's DropPath, timm's SqueezeExcite (mean over space, conv, gate),
and torchvision's StochasticDepth (``stochastic_depth`` is ``torch.fx.wrap``'ed, as in
torchvision.ops). Each model takes ``in_channels`` and ``num_classes`` like the zoo's.
"""

import math
from typing import List, Tuple

import torch
import torch.fx
import torch.nn.functional as F
from torch import nn


# ---- timm.layers.padding / conv2d_same (dynamic "same" padding, as in TF-ported weights)
def get_same_padding(x: int, kernel_size: int, stride: int, dilation: int):
    return max((math.ceil(x / stride) - 1) * stride + (kernel_size - 1) * dilation + 1 - x, 0)


def pad_same(x, kernel_size: List[int], stride: List[int], dilation: List[int] = (1, 1), value: float = 0):
    ih, iw = x.size()[-2:]
    pad_h = get_same_padding(ih, kernel_size[0], stride[0], dilation[0])
    pad_w = get_same_padding(iw, kernel_size[1], stride[1], dilation[1])
    return F.pad(x, (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2), value=value)


def conv2d_same(x, weight, bias=None, stride: Tuple[int, int] = (1, 1), padding=(0, 0), dilation=(1, 1), groups: int = 1):
    x = pad_same(x, weight.shape[-2:], stride, dilation)
    return F.conv2d(x, weight, bias, stride, (0, 0), dilation, groups)


class Conv2dSame(nn.Conv2d):
    """Tensorflow like 'SAME' convolution wrapper for 2D convolutions."""

    def __init__(self, in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1, groups=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation, groups, bias)

    def forward(self, x):
        return conv2d_same(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


# ---- timm.layers.drop
def drop_path(x, drop_prob: float = 0.0, training: bool = False, scale_by_keep: bool = True):
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = x.new_empty(shape).bernoulli_(keep_prob)
    if keep_prob > 0.0 and scale_by_keep:
        random_tensor.div_(keep_prob)
    return x * random_tensor


class DropPath(nn.Module):
    def __init__(self, drop_prob: float = 0.0, scale_by_keep: bool = True):
        super().__init__()
        self.drop_prob = drop_prob
        self.scale_by_keep = scale_by_keep

    def forward(self, x):
        return drop_path(x, self.drop_prob, self.training, self.scale_by_keep)


# ---- torchvision.ops.stochastic_depth
def stochastic_depth(input, p: float, mode: str, training: bool = True):
    if p < 0.0 or p > 1.0:
        raise ValueError(f"drop probability has to be between 0 and 1, but got {p}")
    if not training or p == 0.0:
        return input
    survival_rate = 1.0 - p
    size = [input.shape[0]] + [1] * (input.ndim - 1) if mode == "row" else [1] * input.ndim
    noise = torch.empty(size, dtype=input.dtype, device=input.device).bernoulli_(survival_rate)
    if survival_rate > 0.0:
        noise.div_(survival_rate)
    return input * noise


torch.fx.wrap("stochastic_depth")


class StochasticDepth(nn.Module):
    def __init__(self, p: float, mode: str):
        super().__init__()
        self.p, self.mode = p, mode

    def forward(self, input):
        return stochastic_depth(input, self.p, self.mode, self.training)


# ---- timm.models._efficientnet_blocks, with TF "same" padding (tf_efficientnet_lite*)
class SqueezeExcite(nn.Module):
    def __init__(self, chs, rd_ratio=0.25, act_layer=nn.ReLU, gate_layer=nn.Sigmoid):
        super().__init__()
        rd = max(1, round(chs * rd_ratio))
        self.conv_reduce = nn.Conv2d(chs, rd, 1, bias=True)
        self.act1 = act_layer(inplace=True)
        self.conv_expand = nn.Conv2d(rd, chs, 1, bias=True)
        self.gate = gate_layer()

    def forward(self, x):
        x_se = x.mean((2, 3), keepdim=True)
        x_se = self.conv_expand(self.act1(self.conv_reduce(x_se)))
        return x * self.gate(x_se)


def conv_bn_act(cin, cout, k, stride=1, groups=1, act=True):
    conv = Conv2dSame(cin, cout, k, stride, groups=groups, bias=False) if stride > 1 else nn.Conv2d(cin, cout, k, 1, k // 2, groups=groups, bias=False)
    return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU6(inplace=True) if act else nn.Identity())


class InvertedResidual(nn.Module):
    """timm's InvertedResidual: pw expand, dw (same-padded when strided), SE, pw project, DropPath residual."""

    def __init__(self, cin, cout, stride, exp_ratio=4, se=True, drop_path_rate=0.1):
        super().__init__()
        mid = cin * exp_ratio
        self.conv_pw = conv_bn_act(cin, mid, 1)
        self.conv_dw = conv_bn_act(mid, mid, 3, stride, groups=mid)
        self.se = SqueezeExcite(mid) if se else nn.Identity()
        self.conv_pwl = conv_bn_act(mid, cout, 1, act=False)
        self.has_skip = stride == 1 and cin == cout
        self.drop_path = DropPath(drop_path_rate) if drop_path_rate else nn.Identity()

    def forward(self, x):
        shortcut = x
        x = self.conv_pwl(self.se(self.conv_dw(self.conv_pw(x))))
        return self.drop_path(x) + shortcut if self.has_skip else x


class TimmEfficientNetLiteTiny(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.conv_stem = Conv2dSame(in_channels, 16, 3, 2, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.blocks = nn.Sequential(InvertedResidual(16, 16, 1, 1, se=False), InvertedResidual(16, 24, 2),
                                    InvertedResidual(24, 24, 1), InvertedResidual(24, 40, 2), InvertedResidual(40, 40, 1))
        self.conv_head = nn.Conv2d(40, 64, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(64)
        self.classifier = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu6(self.bn1(self.conv_stem(x)))
        x = F.relu6(self.bn2(self.conv_head(self.blocks(x))))
        return self.classifier(F.adaptive_avg_pool2d(x, 1).flatten(1))


# ---- torchvision.models.efficientnet.MBConv with stochastic depth
class TVSqueezeExcitation(nn.Module):
    def __init__(self, channels, squeeze):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1, self.fc2 = nn.Conv2d(channels, squeeze, 1), nn.Conv2d(squeeze, channels, 1)
        self.activation, self.scale_activation = nn.SiLU(), nn.Sigmoid()

    def forward(self, x):
        return self.scale_activation(self.fc2(self.activation(self.fc1(self.avgpool(x))))) * x


def cna(cin, cout, k, stride=1, groups=1, act=True):
    layers = [nn.Conv2d(cin, cout, k, stride, (k - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    return nn.Sequential(*layers, nn.SiLU(inplace=True)) if act else nn.Sequential(*layers)


class MBConvSD(nn.Module):
    def __init__(self, cin, cout, expand, stride, sd_prob):
        super().__init__()
        mid = cin * expand
        layers = ([cna(cin, mid, 1)] if expand != 1 else []) + [cna(mid, mid, 3, stride, mid), TVSqueezeExcitation(mid, max(1, cin // 4)),
                                                                 cna(mid, cout, 1, act=False)]
        self.block = nn.Sequential(*layers)
        self.stochastic_depth = StochasticDepth(sd_prob, "row")
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, input):
        result = self.block(input)
        if self.use_res_connect:
            result = self.stochastic_depth(result)
            result += input
        return result


class TVEfficientNetSDTiny(nn.Module):
    def __init__(self, in_channels=3, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(cna(in_channels, 16, 3, 2), MBConvSD(16, 16, 1, 1, 0.05), MBConvSD(16, 24, 4, 2, 0.1),
                                      MBConvSD(24, 24, 4, 1, 0.15), MBConvSD(24, 24, 4, 1, 0.2), cna(24, 64, 1))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(64, num_classes))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


TIMM_MODELS = {
    "timm_efficientnet_lite_tiny": TimmEfficientNetLiteTiny,
    "tv_efficientnet_sd_tiny": TVEfficientNetSDTiny,
}
