"""Apply a PrunePlan: a new GraphModule with physically smaller weights.

>>> import torch
>>> from hakd.models import resnet20
>>> from hakd.passes.trace import trace
>>> from hakd.passes.groups import find_groups
>>> from hakd.plan import PrunePlan
>>> gm = trace(resnet20(), torch.zeros(1, 3, 32, 32))
>>> groups = find_groups(gm)
>>> small = rebuild(gm, groups, PrunePlan.from_widths({"layers.0.conv1": 5}, groups.widths()))
>>> small.get_submodule("layers.0.conv1").out_channels, gm.get_submodule("layers.0.conv1").out_channels
(5, 16)
"""

from __future__ import annotations

import copy
from typing import Dict

import numpy as np
import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import TensorMetadata

from hakd.errors import PlanError
from hakd.passes.channel_moves import gather_index
from hakd.passes.groups import META_KEY, ChannelGroups
from hakd.passes.labels import channel_vector
from hakd.plan import PrunePlan

__all__ = ["rebuild", "rebuild_part", "zero_pruned"]


def _keep(plan: PrunePlan) -> Dict[str, np.ndarray]:
    return {g: np.asarray(k) for g, k in plan.keep.items() if len(k) != plan.widths[g]}


def _param(t, mask_out=None, mask_in=None):
    if t is None:
        return None
    data = t.data
    if mask_out is not None:
        data = data[torch.from_numpy(mask_out)]
    if mask_in is not None:
        data = data[:, torch.from_numpy(mask_in)]
    return data.clone()


def _shrink(m: nn.Module, kind: str, out_mask: np.ndarray, in_mask: np.ndarray) -> None:
    if kind == "norm":
        m.num_features = int(out_mask.sum())
        for name in ("weight", "bias"):
            if getattr(m, name) is not None:
                setattr(m, name, nn.Parameter(_param(getattr(m, name), out_mask)))
        for name in ("running_mean", "running_var"):
            if getattr(m, name) is not None:
                setattr(m, name, _param(getattr(m, name), out_mask))
        return
    if kind == "depthwise":
        n = int(out_mask.sum())
        m.in_channels = m.out_channels = m.groups = n
        m.weight = nn.Parameter(_param(m.weight, out_mask))
    else:  # conv or linear
        m.weight = nn.Parameter(_param(m.weight, out_mask, in_mask))
        if kind == "conv":
            m.out_channels, m.in_channels = int(out_mask.sum()), int(in_mask.sum())
        else:
            m.out_features, m.in_features = int(out_mask.sum()), int(in_mask.sum())
    if m.bias is not None:
        m.bias = nn.Parameter(_param(m.bias, out_mask))


def _shrink_grouped(m: nn.Conv2d, name: str, out_mask: np.ndarray, in_mask: np.ndarray) -> None:
    """A grouped conv keeps the same number of inputs and outputs in each of its groups; each
    kept filter keeps the weights of its own group's kept inputs."""
    if out_mask.all() and in_mask.all():
        return
    g = m.groups
    ins, outs = in_mask.reshape(g, -1), out_mask.reshape(g, -1)
    if len(set(ins.sum(1).tolist())) > 1 or len(set(outs.sum(1).tolist())) > 1:
        raise PlanError(f"plan keeps {ins.sum(1).tolist()} inputs and {outs.sum(1).tolist()} outputs in the {g} groups "
                        f"of grouped conv {name!r}: keep the same number in each (make the plan with ChannelGroups.plan)")
    kept_in = torch.from_numpy(np.stack([np.flatnonzero(row) for row in ins]))  # (groups, inputs kept per group)
    rows = np.flatnonzero(out_mask)
    group_of_row = torch.from_numpy(rows // outs.shape[1])
    weight = m.weight.data[torch.from_numpy(rows)]
    index = kept_in[group_of_row].view(len(rows), -1, *[1] * (weight.ndim - 2)).expand(-1, -1, *weight.shape[2:])
    m.weight = nn.Parameter(weight.gather(1, index).clone())
    m.out_channels, m.in_channels = len(rows), int(in_mask.sum())
    if m.bias is not None:
        m.bias = nn.Parameter(_param(m.bias, out_mask))


def rebuild(gm: fx.GraphModule, groups: ChannelGroups, plan: PrunePlan) -> fx.GraphModule:
    """A copy of ``gm`` where each group keeps only the plan's channels; ``gm`` is untouched."""
    plan.validate(groups)
    kept = groups.kept_ids(_keep(plan))
    new = copy.deepcopy(gm)
    _shrink_records(new, groups, kept)
    _replay_moves(new, gm, groups, kept)
    new.recompile()
    return new


def rebuild_part(part: fx.GraphModule, groups: ChannelGroups, plan: PrunePlan) -> fx.GraphModule:
    """:func:`rebuild` for a part of the traced model (:func:`hakd.passes.neighbourhood.neighbourhood`):
    the layers it holds shrink, and its inputs' shapes (``tensor_meta``) become those the plan
    gives them (from their channel labels), at a fraction of the cost of rebuilding the whole
    model. Raises PlanError when an input's shape cannot be told (no labels, channels that move
    across space) or a channel move (a shuffle) starts outside the part.

    >>> import torch
    >>> from hakd.models import resnet20
    >>> from hakd.passes.groups import find_groups
    >>> from hakd.passes.neighbourhood import neighbourhood
    >>> from hakd.passes.trace import trace
    >>> gm = trace(resnet20(), torch.zeros(1, 3, 32, 32))
    >>> groups = find_groups(gm)
    >>> part = neighbourhood(gm, {"layers.3.conv1"}, hops=1)  # its input: the stage-1 residual stream
    >>> small = rebuild_part(part, groups, groups.plan({**groups.widths(), "layers.3.conv1": 5, "conv1": 7}))
    >>> small.get_submodule("layers.3.conv1").weight.shape, [tuple(n.meta["tensor_meta"].shape)
    ...                                                      for n in small.graph.nodes if n.op == "placeholder"]
    (torch.Size([5, 7, 3, 3]), [(1, 7, 32, 32)])
    """
    plan.validate(groups)
    kept = groups.kept_ids(_keep(plan))
    new = copy.deepcopy(part)
    _shrink_records(new, groups, kept, present=_present(new))
    for n in new.graph.nodes:
        if n.op == "placeholder":
            n.meta["tensor_meta"] = _pruned_meta(n, kept)
    _replay_moves(new, part, groups, kept)
    new.recompile()
    return new


def _present(gm: fx.GraphModule) -> set:
    """The modules and parameters ``gm`` holds (a part of a model holds some only)."""
    return {name for name, _ in gm.named_modules()} | {name for name, _ in gm.named_parameters()}


def _pruned_meta(n: fx.Node, kept: np.ndarray) -> TensorMetadata:
    meta, label = n.meta.get("tensor_meta"), n.meta.get(META_KEY)
    known = isinstance(meta, TensorMetadata) and isinstance(label, torch.Tensor)
    ids = channel_vector(label, meta.shape) if known else None
    if ids is None:
        raise PlanError(f"input {n.name!r} of the part: its pruned shape cannot be told (no channel labels, or "
                        "channels that move across space): rebuild the whole model")
    shape = list(meta.shape)
    shape[1] = int(kept[ids.numpy()].sum())
    return meta._replace(shape=torch.Size(shape))


def _shrink_records(new: fx.GraphModule, groups: ChannelGroups, kept: np.ndarray, present=None) -> None:
    """Slice every recorded layer's weights to the kept channels; ``present``: only the layers
    (and functional parameters) of these names, those a part of the model holds."""
    done = set()
    for rec in groups.records.values():
        if (rec.params or rec.module) in done:
            continue
        done.add(rec.params or rec.module)
        if present is not None and not (rec.module in present if not rec.params else set(rec.params) <= present):
            continue
        out_mask, in_mask = kept[rec.out_ids], kept[rec.in_ids]
        if not out_mask.any() or (rec.kind in ("conv", "linear") and not in_mask.any()):
            raise PlanError(f"plan would leave module {rec.module!r} with no channels")
        if rec.params:  # F.conv2d / F.linear: slice its parameters where they live
            for path, mask_in in zip(rec.params, (in_mask, None)):
                owner_path, _, name = path.rpartition(".")
                owner = new.get_submodule(owner_path)  # "": the model itself
                setattr(owner, name, nn.Parameter(_param(getattr(owner, name), out_mask, mask_in)))
            continue
        if rec.kind == "grouped":
            _shrink_grouped(new.get_submodule(rec.module), rec.module, out_mask, in_mask)
            continue
        _shrink(new.get_submodule(rec.module), rec.kind, out_mask, in_mask)


def _replay_moves(new: fx.GraphModule, gm: fx.GraphModule, groups: ChannelGroups, kept: np.ndarray) -> None:
    """Each channel move written for the traced width (a channel shuffle, a split) becomes an
    index_select of the kept channels of its start (:mod:`hakd.passes.channel_moves`)."""
    if not groups.gathers:
        return
    traced = {n.name: n for n in gm.graph.nodes}
    nodes = {n.name: n for n in new.graph.nodes}
    ids = lambda name: channel_vector(traced[name].meta[META_KEY], traced[name].meta["tensor_meta"].shape).numpy()  # noqa: E731
    replaced: Dict[str, fx.Node] = {}
    for n in list(new.graph.nodes):  # in graph order: a gather's start may be an earlier gather's end
        gather = groups.gathers.get(n.name)
        if gather is None or n.op == "placeholder":  # a part's input: its labels already say what it holds
            continue
        if gather.start not in nodes:
            raise PlanError(f"the channel move at {n.name!r} starts at {gather.start!r}, outside this part of the "
                            "model: rebuild the whole model")
        buffer = f"hakd_gather_{len(replaced)}"
        new.register_buffer(buffer, gather_index(ids(gather.start), ids(n.name), kept))
        with new.graph.inserting_before(n):
            select = new.graph.call_function(torch.index_select, (replaced.get(gather.start, nodes[gather.start]), 1,
                                                                  new.graph.get_attr(buffer)))
        n.replace_all_uses_with(select)
        replaced[n.name] = select
    new.graph.eliminate_dead_code()  # the moves as written, and the sizes they read


class _Masked(fx.Interpreter):
    def __init__(self, gm, masks):
        super().__init__(gm)
        self.masks = masks

    def run_node(self, n):
        value = super().run_node(n)
        mask = self.masks.get(n)
        return value * mask.to(value.dtype) if mask is not None and isinstance(value, torch.Tensor) else value


def zero_pruned(gm: fx.GraphModule, groups: ChannelGroups, plan: PrunePlan, *inputs) -> torch.Tensor:
    """Run ``gm`` with every pruned channel multiplied by zero in every tensor it flows through.

    This is what a plan means; ``rebuild(gm, groups, plan)(x)`` must equal it. Needs the
    labels :func:`find_groups` left in ``node.meta``.
    """
    plan.validate(groups)
    kept = groups.kept_ids(_keep(plan))
    masks = {}
    for n in gm.graph.nodes:
        label = n.meta.get(META_KEY)
        if isinstance(label, torch.Tensor) and n.op != "output":
            flat = kept[label.reshape(-1).numpy()]
            masks[n] = torch.from_numpy(flat.reshape(tuple(label.shape)))
    return _Masked(gm, masks).run(*inputs)
