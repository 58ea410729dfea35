"""Channel labels: which channel of which source each element of a tensor carries.

A label tensor holds, for every element of an activation (batch dimension 1), the
global id of the source channel it comes from, or ``NO_CHANNEL`` (-1). Labels are
kept in broadcastable form, e.g. ``(1, C, 1, 1)`` for a NCHW activation whose
channels do not move spatially. Data-movement operations (cat, view, flatten ...)
are run on the labels themselves, which yields exact channel maps for free.
"""

from __future__ import annotations

from typing import Optional, Sequence

import torch

__all__ = ["NO_CHANNEL", "compress", "channel_vector", "feature_vector", "uniform_except"]

NO_CHANNEL = -1


def uniform_except(label: torch.Tensor, shape: Sequence[int], keep: Sequence[int]) -> Optional[torch.Tensor]:
    """``label`` expanded to ``shape`` and reduced over every dim not in ``keep`` (keepdim),
    or None when it varies along those dims (the channels move spatially)."""
    full = label.expand(*shape)
    dims = tuple(d for d in range(len(shape)) if d not in keep and full.shape[d] > 1)
    if not dims:
        return full
    hi, lo = full.amax(dim=dims, keepdim=True), full.amin(dim=dims, keepdim=True)
    return hi if torch.equal(hi, lo) else None


def compress(label: torch.Tensor) -> torch.Tensor:
    """The smallest broadcastable form of a label: spatial dims of size 1 when uniform."""
    if label.ndim < 3:
        return label
    squeezed = uniform_except(label, label.shape, keep=(0, 1))
    return label if squeezed is None else squeezed.contiguous()


def channel_vector(label: torch.Tensor, shape: Sequence[int]) -> Optional[torch.Tensor]:
    """Ids of channel dim 1, one per channel, or None if a channel's id varies over space."""
    reduced = uniform_except(label, shape, keep=(1,))
    return None if reduced is None else reduced.reshape(-1).clone()


def feature_vector(label: torch.Tensor, shape: Sequence[int]) -> Optional[torch.Tensor]:
    """Ids along the last dim (the features a Linear layer reads), or None if they vary elsewhere."""
    reduced = uniform_except(label, shape, keep=(len(shape) - 1,))
    return None if reduced is None else reduced.reshape(-1).clone()
