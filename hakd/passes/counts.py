"""Parameters and multiply-accumulates of a model, for pruning targets and reports.

>>> import torch
>>> from hakd.models import resnet20
>>> params, macs = count(resnet20(), (1, 3, 32, 32))
>>> params, round(macs / 1e6, 1)
(272474, 40.8)
"""

from __future__ import annotations

from typing import Dict, Tuple

import torch
from torch import fx, nn

from hakd.layer_types import functional_params
from hakd.passes.rebuild import rebuild
from hakd.passes.trace import input_shape as traced_shape

__all__ = ["count", "params_per_channel"]


class _FunctionalMacs(fx.Interpreter):
    """Runs a traced model, adding the MACs of its ``F.conv2d`` / ``F.linear`` calls."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm, garbage_collect_values=False)
        self.macs = 0

    def run_node(self, n):
        out = super().run_node(n)
        params = functional_params(n)
        if params:  # one output element reads weight[0]: in_channels / groups x kernel, or in_features
            self.macs += out.numel() // out.shape[0] * self.env[params[0]][0].numel()
        return out


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
    functional = isinstance(model, fx.GraphModule) and any(functional_params(n) for n in model.graph.nodes)
    run = _FunctionalMacs(model) if functional else None
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            (run.run if run else model)(torch.zeros(1, *tuple(input_shape)[1:]))
    finally:
        model.train(training)
        for h in handles:
            h.remove()
    return sum(p.numel() for p in model.parameters()), macs + (run.macs if run else 0)


def params_per_channel(gm: fx.GraphModule, groups, plan, names, input_shape=None) -> Dict[str, float]:
    """Parameters one channel of each named group holds, with the other groups as in ``plan``
    (``groups``: a ChannelGroups; a group in slices is measured one channel per slice at once)."""
    shape = input_shape or traced_shape(gm)
    widths = plan.pruned_widths()
    base, _ = count(rebuild(gm, groups, groups.plan(widths)), shape)
    out = {}
    for g in names:
        step = groups[g].slices
        other = widths[g] - step if widths[g] > step else widths[g] + step
        if other > groups[g].width:  # a group of one channel (per slice)
            out[g] = 0.0
            continue
        params, _ = count(rebuild(gm, groups, groups.plan({**widths, g: other})), shape)
        out[g] = abs(base - params) / step
    return out
