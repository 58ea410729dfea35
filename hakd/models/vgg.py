"""VGG-11 with BatchNorm for small images (Simonyan and Zisserman 2015, CIFAR layout).

Pooling rounds up (``ceil_mode``) so 28x28 inputs survive five poolings.

>>> import torch
>>> vgg11(in_channels=1)(torch.zeros(1, 1, 28, 28)).shape
torch.Size([1, 10])
"""

from torch import nn

__all__ = ["VGG", "vgg11"]

CFG_11 = [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"]


class VGG(nn.Module):
    def __init__(self, cfg=CFG_11, in_channels: int = 3, num_classes: int = 10):
        super().__init__()
        layers, cin = [], in_channels
        for item in cfg:
            if item == "M":
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            else:
                layers += [nn.Conv2d(cin, item, 3, padding=1, bias=False), nn.BatchNorm2d(item), nn.ReLU(inplace=True)]
                cin = item
        self.features = nn.Sequential(*layers)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)

    def forward(self, x):
        return self.fc(self.pool(self.features(x)).flatten(1))


def vgg11(in_channels: int = 3, num_classes: int = 10) -> VGG:
    return VGG(CFG_11, in_channels, num_classes)
