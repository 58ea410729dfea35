"""Channel probes: mask channel groups and gather Fisher saliency without editing the model.

:func:`insert_probes` returns a copy of a traced model with a probe after every tensor
that a conv or linear layer reads. A probe multiplies the tensor by its groups' channel
masks (a masked channel is pruned: no layer can see it any more) and, while recording,
accumulates per channel the Fisher saliency of Theis et al. (2018):
``0.5 * mean_n (sum_hw a * dL/da)^2`` for each probed tensor, summed over the tensors a
group flows through.

>>> import torch
>>> from hakd.models import resnet20
>>> from hakd.passes.trace import trace
>>> from hakd.passes.groups import find_groups
>>> gm = trace(resnet20(), torch.zeros(1, 3, 32, 32)); groups = find_groups(gm)
>>> probed = insert_probes(gm, groups)
>>> probed.mask("layers.0.conv1", 3); probed.widths()["layers.0.conv1"]
15
"""

from __future__ import annotations

import copy
from typing import Dict, List

import numpy as np
import torch
from torch import fx, nn

from hakd.layer_types import functional_params
from hakd.passes.groups import META_KEY, ChannelGroups

__all__ = ["ChannelProbe", "ProbedModel", "insert_probes"]


class ChannelProbe(nn.Module):
    """Identity with channel masks; records per-channel saliency while ``recording``."""

    def __init__(self, shape, index: Dict[str, torch.Tensor]):
        super().__init__()
        self.shape = tuple(shape)  # element shape without the batch dim
        self.index = index  # group -> (elements (flat, within one sample), positions in the group)
        self.scale = nn.Parameter(torch.ones(self.shape), requires_grad=False)  # 0 where a channel is pruned
        self.recording = False
        self.saliency: Dict[str, torch.Tensor] = {}

    def forward(self, x):
        if self.scale.shape != x.shape[1:]:
            return x * self.scale.expand(x.shape[1:])  # broadcastable labels kept compact
        out = x * self.scale
        if self.recording and out.requires_grad:
            out.register_hook(lambda g, a=out.detach(): self._accumulate(a, g))
        return out

    def _accumulate(self, a: torch.Tensor, g: torch.Tensor):
        prod = (a * g).float().reshape(a.shape[0], -1)  # float: under bf16 autocast too
        for group, (elements, positions, width) in list(self.index.items()):
            if elements.device != prod.device:  # the model moved to a training device: its indices follow once
                elements, positions = elements.to(prod.device), positions.to(prod.device)
                self.index[group] = (elements, positions, width)
            per_channel = torch.zeros(a.shape[0], width, dtype=prod.dtype, device=prod.device).index_add_(
                1, positions, prod[:, elements])
            add = 0.5 * per_channel.pow(2).sum(0)
            self.saliency[group] = self.saliency.get(group, 0) + add
        return None


class ProbedModel(nn.Module):
    """A traced model with probes; ``keep`` holds each group's remaining channel positions."""

    def __init__(self, gm: fx.GraphModule, probes: List[ChannelProbe], groups: ChannelGroups):
        super().__init__()
        self.gm = gm
        self.probes = probes
        self.group_names = [g.name for g in groups.prunable()]
        self.full_widths = groups.widths()
        self.alive = {g: np.ones(groups[g].width, dtype=bool) for g in self.group_names}
        self.samples = 0

    def forward(self, x):
        return self.gm(x)

    # ---- masks
    def mask(self, group: str, position: int) -> None:
        """Prune channel ``position`` of ``group`` (zero it in every probed tensor)."""
        self.alive[group][position] = False
        for p in self.probes:
            if group in p.index:
                elements, positions, _ = p.index[group]
                hit = elements[positions == position]
                with torch.no_grad():
                    p.scale.view(-1)[hit.to(p.scale.device)] = 0.0

    def widths(self) -> Dict[str, int]:
        return {g: int(a.sum()) for g, a in self.alive.items()}

    def keep(self) -> Dict[str, tuple]:
        return {g: tuple(np.flatnonzero(a).tolist()) for g, a in self.alive.items() if not a.all()}

    # ---- saliency
    def record(self, on: bool = True) -> None:
        for p in self.probes:
            p.recording = on

    def count(self, n: int) -> None:
        self.samples += n

    def saliency(self) -> Dict[str, np.ndarray]:
        """Mean Fisher saliency per channel of each prunable group since the last reset."""
        out = {g: np.zeros(self.full_widths[g]) for g in self.group_names}
        for p in self.probes:
            for g, s in p.saliency.items():
                if g in out:
                    out[g] += s.detach().double().cpu().numpy()
        n = max(self.samples, 1)
        return {g: v / n for g, v in out.items()}

    def reset(self) -> None:
        self.samples = 0
        for p in self.probes:
            p.saliency = {}


def _probe_points(gm: fx.GraphModule, groups: ChannelGroups) -> List[fx.Node]:
    """Nodes whose output a conv or linear reads and that carry a prunable group's channels."""
    readers = {n.args[0] for n in gm.graph.nodes if n.op == "call_module"
               and isinstance(gm.get_submodule(n.target), (nn.Conv2d, nn.Linear)) or functional_params(n)}
    prunable = {i for i, g in enumerate(groups.groups) if g.prunable}
    points = []
    for n in gm.graph.nodes:
        label = n.meta.get(META_KEY)
        if n in readers and isinstance(label, torch.Tensor):
            gidx, _ = groups.locate(label.reshape(-1).numpy())
            if prunable & set(gidx.tolist()):
                points.append(n)
    return points


def insert_probes(gm: fx.GraphModule, groups: ChannelGroups) -> ProbedModel:
    """A copy of ``gm`` with a :class:`ChannelProbe` after every probe point; ``gm`` is untouched."""
    new = copy.deepcopy(gm)
    node_by_name = {n.name: n for n in new.graph.nodes}
    probes = []
    for k, point in enumerate(_probe_points(gm, groups)):
        node = node_by_name[point.name]
        label = point.meta[META_KEY]
        shape = tuple(point.meta["tensor_meta"].shape[1:])
        full = label.expand(1, *shape).reshape(-1).numpy()
        gidx, pos = groups.locate(full)
        index = {}
        for g in sorted(set(gidx.tolist()) - {-1}):
            group = groups.groups[g]
            if group.prunable:
                sel = np.flatnonzero(gidx == g)
                index[group.name] = (torch.from_numpy(sel), torch.from_numpy(pos[sel]), group.width)
        probe = ChannelProbe(shape, index)
        name = f"hakd_probe_{k}"
        new.add_submodule(name, probe)
        probes.append(probe)
        with new.graph.inserting_after(node):
            probed = new.graph.call_module(name, (node,))
        node.replace_all_uses_with(probed, delete_user_cb=lambda user: user is not probed)
    new.graph.lint()
    new.recompile()
    return ProbedModel(new, probes, groups)
