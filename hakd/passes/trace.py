"""Trace an ``nn.Module`` into a ``torch.fx.GraphModule`` with shapes in ``node.meta``.

>>> import torch
>>> from hakd.models import resnet20
>>> gm = trace(resnet20(), torch.zeros(1, 3, 32, 32))
>>> [n.meta["tensor_meta"].shape for n in gm.graph.nodes if n.target == "conv1"]
[torch.Size([1, 16, 32, 32])]
"""

from __future__ import annotations

import contextlib
import io

from typing import Iterable, Optional

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from hakd.errors import TraceError
from hakd.layer_types import is_drop_path, is_layer

__all__ = ["trace", "input_shape", "HakdTracer"]


class HakdTracer(fx.Tracer):
    """fx's tracer that keeps layers whole and remembers which submodule it is in, to name it
    when tracing fails. Leaves: ``leaf_modules``, subclasses of Conv2d and Linear (a "same
    padding" conv whose forward calls ``F.conv2d`` on its own weight is still a conv; list its
    type in ``trace_into`` to trace into it), and stochastic-depth modules."""

    def __init__(self, leaf_modules: Iterable[type] = (), trace_into: Iterable[type] = ()):
        super().__init__()
        self.leaf_types = tuple(leaf_modules)
        self.trace_into = tuple(trace_into)
        self.failed_in: Optional[str] = None  # innermost submodule being traced when tracing failed

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        if isinstance(m, self.leaf_types):
            return True
        if type(m) in self.trace_into:
            return False
        return is_layer(m) or is_drop_path(m) or super().is_leaf_module(m, qualname)

    def call_module(self, m, forward, args, kwargs):
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            if self.failed_in is None:
                self.failed_in = self.path_of_module(m)
            raise


def trace(
    model: nn.Module,
    example_input: torch.Tensor,
    leaf_modules: Iterable[type] = (),
    concrete_args: Optional[dict] = None,
    trace_into: Iterable[type] = (),
) -> fx.GraphModule:
    """Symbolically trace ``model`` and record each node's output shape (``node.meta["tensor_meta"]``).

    The model is not modified. ``leaf_modules`` are module types kept whole (not traced
    into); hakd's passes treat an unknown leaf as an opaque operation. Subclasses of
    Conv2d and Linear are kept whole too (pruned as the layers they are) unless their type
    is in ``trace_into``.
    """
    if not isinstance(model, nn.Module):
        raise TraceError(f"trace takes an nn.Module, got a {type(model).__name__}: wrap the function in a module")
    if not isinstance(example_input, torch.Tensor):
        raise TraceError(f"trace needs an example input tensor (N, C, H, W), got a {type(example_input).__name__}")
    tracer = HakdTracer(leaf_modules, trace_into)
    try:
        graph = tracer.trace(model, concrete_args)
    except Exception as e:  # fx raises many types; all mean "cannot trace"
        where = tracer.failed_in
        culprit = type(model.get_submodule(where)).__name__ if where else type(model).__name__
        raise TraceError(
            f"torch.fx cannot trace {type(model).__name__}: in {f'submodule {where!r} ({culprit})' if where else 'its own forward'}, "
            f"{type(e).__name__}: {e}. Data-dependent control flow and unsupported calls cannot be traced: keep that "
            f"module whole with trace(..., leaf_modules=[{culprit}]) (its channels are then not pruned), or fix the "
            "branch with concrete_args={'flag': value}"
        ) from e
    gm = fx.GraphModule(model, graph, class_name=type(model).__name__)
    was_training = gm.training
    gm.eval()
    try:
        with torch.no_grad(), contextlib.redirect_stderr(io.StringIO()):  # ShapeProp prints a traceback of its own
            ShapeProp(gm).propagate(example_input)
    except Exception as e:
        first = next((m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))), None)
        expected = ""
        if isinstance(first, nn.Conv2d) and example_input.dim() == 4 and example_input.shape[1] != first.in_channels:
            expected = f"its first convolution takes {first.in_channels} input channels, the input has {example_input.shape[1]}; "
        root = e
        while root.__cause__ is not None:  # fx's ShapeProp wraps the model's own error in its node dump
            root = root.__cause__
        raise TraceError(
            f"{type(model).__name__} fails on an example input of shape {tuple(example_input.shape)}: {expected}"
            f"{type(root).__name__}: {str(root).splitlines()[0][:200]}. Pass an input of the shape the model expects "
            "(N, C, H, W)"
        ) from e
    gm.train(was_training)
    return gm


def input_shape(gm: fx.GraphModule) -> tuple:
    """The example input shape ``gm`` was traced with (from its placeholder's ``tensor_meta``)."""
    return tuple(next(n for n in gm.graph.nodes if n.op == "placeholder").meta["tensor_meta"].shape)
