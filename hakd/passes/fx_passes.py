"""hakd's rewriting passes as torch.fx passes, for a ``PassManager`` of your own.

Each takes a traced GraphModule (:func:`hakd.passes.trace.trace`, shapes in ``node.meta``) and
returns a ``PassResult`` with a new GraphModule; the input is never changed::

    >>> import torch
    >>> from torch.fx.passes.infra.pass_manager import PassManager
    >>> from hakd.models import resnet20
    >>> from hakd.passes.trace import trace
    >>> gm = trace(resnet20(), torch.zeros(1, 3, 32, 32))
    >>> pm = PassManager([PrunePass({"layers.0.conv1": 8}), RetracePass(torch.zeros(1, 3, 32, 32)),
    ...                   WidenPass({"layers.0.conv1": 12})])
    >>> pm(gm).graph_module.get_submodule("layers.0.conv1").out_channels
    12
"""

from __future__ import annotations

from typing import Mapping, Union

import torch
from torch import fx
from torch.fx.passes.infra.pass_base import PassBase, PassResult

from hakd.passes.groups import find_groups
from hakd.passes.rebuild import rebuild
from hakd.passes.trace import trace
from hakd.passes.widen import widen
from hakd.plan import PrunePlan

__all__ = ["PrunePass", "WidenPass", "RetracePass"]


class PrunePass(PassBase):
    """Apply a plan (a PrunePlan, or group -> width keeping the first channels): :func:`rebuild`."""

    def __init__(self, plan: Union[PrunePlan, Mapping[str, int]]):
        self.plan = plan

    def call(self, gm: fx.GraphModule) -> PassResult:
        groups = find_groups(gm)
        plan = self.plan if isinstance(self.plan, PrunePlan) else groups.plan(self.plan)
        return PassResult(rebuild(gm, groups, plan), bool(plan.keep))


class WidenPass(PassBase):
    """Widen groups with zero channels (same function, larger kernels): :func:`widen`."""

    def __init__(self, widths: Mapping[str, int]):
        self.widths = dict(widths)

    def call(self, gm: fx.GraphModule) -> PassResult:
        return PassResult(widen(gm, find_groups(gm), self.widths), True)


class RetracePass(PassBase):
    """Trace again (fresh shapes in ``node.meta``) after a pass changed widths."""

    def __init__(self, example_input: torch.Tensor):
        self.example_input = example_input

    def call(self, gm: fx.GraphModule) -> PassResult:
        return PassResult(trace(gm, self.example_input), True)
