"""Module and function kinds that tracing, channel analysis and lowering all recognise.

>>> from torch import nn
>>> class SameConv(nn.Conv2d): pass
>>> is_layer(SameConv(3, 8, 3)), is_drop_path(type("DropPath", (nn.Module,), {})())
(True, True)
"""

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LAYER_TYPES", "DROP_PATH_NAMES", "FUNCTIONAL_LAYERS", "is_layer", "is_drop_path", "functional_args",
           "functional_params"]

LAYER_TYPES = (nn.Conv2d, nn.Linear)  # subclasses too: a layer to prune, whatever its forward
DROP_PATH_NAMES = frozenset({"DropPath", "StochasticDepth", "stochastic_depth", "drop_path"})  # timm's, torchvision's


def is_layer(m: nn.Module) -> bool:
    return isinstance(m, LAYER_TYPES)


def is_drop_path(target) -> bool:
    """Stochastic depth, a module type, module or function known by its authors' names:
    identity in eval mode, a per-sample scale in training, so channel-wise either way."""
    return getattr(target, "__name__", type(target).__name__) in DROP_PATH_NAMES


_CONV_ARGS = (("input", None), ("weight", None), ("bias", None), ("stride", 1), ("padding", 0), ("dilation", 1),
              ("groups", 1))
# a functional layer's kind and its arguments in order, with their defaults
FUNCTIONAL_LAYERS = {F.conv2d: ("conv", _CONV_ARGS), torch.conv2d: ("conv", _CONV_ARGS),
                     F.linear: ("linear", (("input", None), ("weight", None), ("bias", None)))}


def functional_args(n) -> dict:
    """Every argument of an ``F.conv2d`` / ``F.linear`` call (an fx node) by name, defaults filled
    in, in the function's order; ``{}`` for any other node."""
    if n.op != "call_function" or n.target not in FUNCTIONAL_LAYERS:
        return {}
    spec = FUNCTIONAL_LAYERS[n.target][1]
    given = {**{name: a for (name, _), a in zip(spec, n.args)}, **n.kwargs}
    return {name: given.get(name, default) for name, default in spec}


def functional_params(n) -> tuple:
    """(weight node, bias node or None) of a functional conv or linear (an fx node), else ()."""
    args = functional_args(n)
    return (args["weight"], args["bias"]) if args else ()
