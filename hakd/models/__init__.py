"""hakd's model zoo: CIFAR-layout CNNs that run on 28x28 grayscale and 32x32 colour.

>>> from hakd import models
>>> net = models.create("resnet20", in_channels=1, num_classes=10)
>>> models.names()[:3]
['densenet100', 'densenet40', 'mobilenet_v1']
"""

from typing import Callable, Dict

from torch import nn

from hakd.errors import UnknownModelError
from hakd.models.densenet import densenet40, densenet100
from hakd.models.mobilenet import mobilenet_v1, mobilenet_v2
from hakd.models.resnet import resnet20, resnet56
from hakd.models.vgg import vgg11
from hakd.models.wrn import wrn16_2, wrn40_2

__all__ = ["REGISTRY", "create", "names"]

REGISTRY: Dict[str, Callable[..., nn.Module]] = {
    "resnet20": resnet20,
    "resnet56": resnet56,
    "wrn16_2": wrn16_2,
    "wrn40_2": wrn40_2,
    "mobilenet_v1": mobilenet_v1,
    "mobilenet_v2": mobilenet_v2,
    "densenet40": densenet40,
    "densenet100": densenet100,
    "vgg11": vgg11,
}


def names() -> list:
    """The registered model names, sorted."""
    return sorted(REGISTRY)


def create(name: str, in_channels: int = 3, num_classes: int = 10) -> nn.Module:
    """Build a zoo model by name; an unknown name raises UnknownModelError listing the valid ones."""
    key = name.lower().replace("-", "_")
    if key not in REGISTRY:
        raise UnknownModelError(f"unknown model {name!r}; valid names: {', '.join(names())}")
    return REGISTRY[key](in_channels=in_channels, num_classes=num_classes)
