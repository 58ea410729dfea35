"""Module and function kinds that tracing, channel analysis and lowering all recognise.

>>> from torch import nn
>>> class SameConv(nn.Conv2d): pass
>>> is_layer(SameConv(3, 8, 3)), is_drop_path(type("DropPath", (nn.Module,), {})())
(True, True)
"""

from torch import nn

__all__ = ["LAYER_TYPES", "DROP_PATH_NAMES", "is_layer", "is_drop_path"]

LAYER_TYPES = (nn.Conv2d, nn.Linear)  # subclasses too: a layer to prune, whatever its forward
DROP_PATH_NAMES = frozenset({"DropPath", "StochasticDepth", "stochastic_depth", "drop_path"})  # timm's, torchvision's


def is_layer(m: nn.Module) -> bool:
    return isinstance(m, LAYER_TYPES)


def is_drop_path(target) -> bool:
    """Stochastic depth, a module type, module or function known by its authors' names:
    identity in eval mode, a per-sample scale in training, so channel-wise either way."""
    return getattr(target, "__name__", type(target).__name__) in DROP_PATH_NAMES
