"""Parameters and multiply-accumulates of a model, for pruning targets and reports.

>>> import torch
>>> from hakd.models import resnet20
>>> params, macs = count(resnet20(), (1, 3, 32, 32))
>>> params, round(macs / 1e6, 1)
(272474, 40.8)
"""

from __future__ import annotations

from typing import Tuple

import torch
from torch import nn

__all__ = ["count"]


def count(model: nn.Module, input_shape) -> Tuple[int, int]:
    """(parameters, MACs of conv and linear layers for one input of ``input_shape``)."""
    macs = 0

    def hook(m, inputs, out):
        nonlocal macs
        if isinstance(m, nn.Conv2d):
            macs += out.numel() // out.shape[0] * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]
        else:
            macs += out.numel() // out.shape[0] * m.in_features

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *tuple(input_shape)[1:]))
    finally:
        model.train(training)
        for h in handles:
            h.remove()
    return sum(p.numel() for p in model.parameters()), macs
