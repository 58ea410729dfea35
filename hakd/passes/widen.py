"""Widen channel groups with zero channels: the same function at larger widths.

A model pruned elsewhere has no channels beyond its widths, so the latency of wider widths
cannot be measured on it. :func:`widen` appends channels to groups: producers get zero
filters (and zero bias), BatchNorms an identity on them (weight 1, bias 0, mean 0, var 1),
consumers zero weights for them; every new channel is zero wherever it flows, so the
widened model computes exactly what the original computes, and its kernels are those of a
model at the larger widths. A group whose channels are laid out more than once in one
tensor (flattened with their spatial positions) cannot be widened this way::

    >>> import torch
    >>> from hakd.models import resnet20
    >>> from hakd.passes.trace import trace
    >>> from hakd.passes.groups import find_groups
    >>> gm = trace(resnet20(), torch.zeros(1, 3, 32, 32)); groups = find_groups(gm)
    >>> wide = widen(gm, groups, {"layers.0.conv1": 24})
    >>> wide.get_submodule("layers.0.conv1").out_channels, wide.get_submodule("layers.0.conv2").in_channels
    (24, 24)
"""

from __future__ import annotations

import copy
from typing import Dict, List, Mapping, Optional

import numpy as np
import torch
from torch import fx, nn

from hakd.errors import GroupError
from hakd.passes.groups import META_KEY, ChannelGroups

__all__ = ["widen"]


def _layout(groups: ChannelGroups, ids: np.ndarray, extra: Dict[int, int], module: str) -> List[Optional[int]]:
    """The new positions of one dimension: an old index, or None for a new zero channel (after each
    widened group's last channel)."""
    gidx, pos = groups.locate(ids)
    for g in extra:
        if np.count_nonzero(gidx == g) > groups.groups[g].width:
            raise GroupError(f"cannot widen group {groups.groups[g].name!r}: module {module!r} reads its channels "
                             "more than once per sample (flattened with their positions)")
    out: List[Optional[int]] = []
    for i, (g, p) in enumerate(zip(gidx.tolist(), pos.tolist())):
        out.append(i)
        if g in extra and p == groups.groups[g].width - 1:
            out.extend([None] * extra[g])
    return out


def _grow(t: torch.Tensor, layout: List[Optional[int]], dim: int, fill: float = 0.0) -> torch.Tensor:
    shape = list(t.shape)
    shape[dim] = len(layout)
    new = torch.full(shape, fill, dtype=t.dtype)
    old = [i for i in layout if i is not None]
    where = [k for k, i in enumerate(layout) if i is not None]
    new.index_copy_(dim, torch.tensor(where), t.index_select(dim, torch.tensor(old)))
    return new


def _check_not_moved(gm: fx.GraphModule, groups: ChannelGroups, extra: Dict[int, int]) -> None:
    """A move written for the traced width (a channel shuffle) would move the new channels wrongly."""
    nodes = {n.name: n for n in gm.graph.nodes}
    for gather in groups.gathers.values():
        gidx, _ = groups.locate(nodes[gather.start].meta[META_KEY].reshape(-1).numpy())
        for g in set(gidx.tolist()) & set(extra):
            raise GroupError(f"cannot widen group {groups.groups[g].name!r}: {gather.end} moves its channels in a way "
                             "written for the traced width (a channel shuffle or split)")


def widen(gm: fx.GraphModule, groups: ChannelGroups, widths: Mapping[str, int]) -> fx.GraphModule:
    """A copy of ``gm`` with each named group widened to ``widths[group]`` (>= its width) by zero channels."""
    extra = {}
    for name, width in widths.items():
        if name not in groups.by_name or not groups[name].prunable:
            raise GroupError(f"cannot widen {name!r}: not a prunable group of this model")
        if width < groups[name].width:
            raise GroupError(f"widen only adds channels: group {name!r} has {groups[name].width}, asked for {width}")
        if width > groups[name].width and groups[name].slices > 1:
            raise GroupError(f"cannot widen group {name!r}: a grouped conv reads or writes it in "
                             f"{groups[name].slices} slices, and widen appends channels after the last one")
        if width > groups[name].width:
            extra[groups.groups.index(groups[name])] = width - groups[name].width
    _check_not_moved(gm, groups, extra)
    new = copy.deepcopy(gm)
    for rec in {r.module: r for r in groups.records.values()}.values():
        out = _layout(groups, np.asarray(rec.out_ids).reshape(-1), extra, rec.module)
        inp = _layout(groups, np.asarray(rec.in_ids).reshape(-1), extra, rec.module) if rec.kind in ("conv", "linear") else None
        if len(out) == len(rec.out_ids) and (inp is None or len(inp) == len(rec.in_ids)):
            continue
        if rec.params:
            raise GroupError(f"cannot widen a group that a functional conv or linear ({rec.params[0]!r}) reads or writes")
        m = new.get_submodule(rec.module)
        if rec.kind == "grouped":
            raise GroupError(f"cannot widen a group that a grouped conv ({rec.module!r}) reads or writes")
        if rec.kind == "norm":
            m.num_features = len(out)
            for name, fill in (("weight", 1.0), ("bias", 0.0)):
                if getattr(m, name) is not None:
                    setattr(m, name, nn.Parameter(_grow(getattr(m, name).data, out, 0, fill)))
            for name, fill in (("running_mean", 0.0), ("running_var", 1.0)):
                if getattr(m, name) is not None:
                    setattr(m, name, _grow(getattr(m, name), out, 0, fill))
            continue
        if rec.kind == "depthwise":
            m.in_channels = m.out_channels = m.groups = len(out)
            m.weight = nn.Parameter(_grow(m.weight.data, out, 0))
        else:
            m.weight = nn.Parameter(_grow(_grow(m.weight.data, out, 0), inp, 1))
            if rec.kind == "conv":
                m.out_channels, m.in_channels = len(out), len(inp)
            else:
                m.out_features, m.in_features = len(out), len(inp)
        if m.bias is not None:
            m.bias = nn.Parameter(_grow(m.bias.data, out, 0))
    new.recompile()
    return new
