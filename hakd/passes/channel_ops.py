"""How each fx operation moves channels: the vocabulary of the channel-group analysis.

An operation is one of:

- *channel-wise*: output channel c depends only on input channel c (activations,
  pooling, dropout, interpolation, BatchNorm, reductions over space);
- *elementwise binary*: ``add``, ``mul`` ...; channel c of each operand is tied;
- *data movement*: reshapes, slices, concatenation; the channel map is computed by
  running the same operation on a tensor of channel labels;
- anything else is *opaque*: the channels that reach it are not prunable.
"""

from __future__ import annotations

import operator

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "CHANNELWISE_MODULES", "CHANNELWISE_FUNCTIONS", "CHANNELWISE_METHODS", "BINARY_FUNCTIONS",
    "BINARY_METHODS", "REDUCTIONS", "MOVEMENT_FUNCTIONS", "MOVEMENT_METHODS", "op_name",
]

CHANNELWISE_MODULES = (
    nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.ELU, nn.SELU, nn.GELU, nn.SiLU, nn.Mish, nn.Hardswish, nn.Hardsigmoid,
    nn.Hardtanh, nn.Sigmoid, nn.Tanh, nn.Identity, nn.Dropout, nn.Dropout2d, nn.AlphaDropout,
    nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Upsample, nn.UpsamplingNearest2d,
    nn.UpsamplingBilinear2d, nn.ZeroPad2d, nn.ReflectionPad2d,
)

CHANNELWISE_FUNCTIONS = {
    F.relu, F.relu6, F.leaky_relu, F.elu, F.gelu, F.silu, F.mish, F.hardswish, F.hardsigmoid, F.hardtanh,
    F.dropout, F.dropout2d, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.avg_pool2d, F.max_pool2d,
    F.interpolate, torch.relu, torch.sigmoid, torch.tanh, torch.clamp, torch.clip, F.sigmoid, F.tanh,
    torch.nn.functional.relu_, torch.relu_,
}

CHANNELWISE_METHODS = {
    "relu", "relu_", "sigmoid", "sigmoid_", "tanh", "clamp", "clamp_", "clip", "contiguous", "clone", "detach",
    "float", "to", "type_as", "hardswish", "abs", "exp", "neg",
}

BINARY_FUNCTIONS = {operator.add, operator.iadd, operator.sub, operator.isub, operator.mul, operator.imul,
                    operator.truediv, operator.itruediv, torch.add, torch.sub, torch.mul, torch.div}
BINARY_METHODS = {"add", "add_", "sub", "sub_", "mul", "mul_", "div", "div_"}

REDUCTIONS = {torch.mean: "mean", torch.sum: "sum", torch.amax: "amax"}  # also methods "mean", "sum", "amax"

MOVEMENT_FUNCTIONS = {torch.flatten: "flatten", torch.cat: "cat", torch.concat: "cat", torch.split: "split",
                      torch.chunk: "chunk", torch.transpose: "transpose", torch.permute: "permute",
                      torch.reshape: "reshape", torch.squeeze: "squeeze", torch.unsqueeze: "unsqueeze",
                      operator.getitem: "getitem", torch.index_select: "index_select"}
MOVEMENT_METHODS = {"view", "reshape", "flatten", "split", "chunk", "transpose", "permute", "squeeze",
                    "unsqueeze", "expand", "expand_as", "view_as", "reshape_as"}


def op_name(target) -> str:
    """A readable name of a call target (``torch.cat``, ``operator.add``, ``'view'``)."""
    if isinstance(target, str):
        return target
    module = getattr(target, "__module__", None) or ""
    return f"{module}.{getattr(target, '__name__', repr(target))}".lstrip(".")

