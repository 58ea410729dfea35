"""Channel-dependency analysis: the channel groups that must be pruned together.

A *source* is a place where channels are born: a conv or linear output (or the model
input, a parameter). Residual adds and channel gates tie sources channel by
channel; concatenation and flattening only re-arrange them. A *group* is a set of
tied sources with a common width; pruning channel k of a group removes it from every
tensor it flows through. Whatever the analysis cannot describe exactly makes the
groups it touches not prunable, with the reason recorded.

>>> import torch
>>> from hakd.models import resnet20
>>> from hakd.passes.trace import trace
>>> groups = find_groups(trace(resnet20(), torch.zeros(1, 3, 32, 32)))
>>> [(g.name, g.width) for g in groups.prunable()][:3]
[('conv1', 16), ('layers.0.conv1', 16), ('layers.1.conv1', 16)]
"""

from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Mapping, Optional, Tuple

import numpy as np
import torch
from torch import fx

from hakd.errors import GroupError
from hakd.passes.channel_analysis import META_KEY, ChannelAnalysis, ModuleRecord, UnionFind
from hakd.passes.channel_moves import Gather
from hakd.plan import PrunePlan

__all__ = ["Member", "ChannelGroup", "ChannelGroups", "ModuleRecord", "find_groups", "META_KEY"]


@dataclasses.dataclass(frozen=True)
class Member:
    """One place a group's channels live: ``role`` is ``out`` (the output channels of a
    conv or linear), ``in`` (a conv's input channels or a linear's input features) or
    ``channel`` (per-channel parameters: BatchNorm, depthwise conv)."""

    module: str
    role: str


@dataclasses.dataclass(frozen=True)
class ChannelGroup:
    """Channels pruned together; ``name`` is its first source (a module name). A group that a
    grouped conv of g groups reads or writes comes in ``slices`` = g equal blocks of channels,
    and keeps the same number in each (its width moves g channels at a time)."""

    name: str
    width: int
    prunable: bool
    reason: Optional[str]
    members: Tuple[Member, ...]
    slices: int = 1

    def to_dict(self) -> dict:
        out = {"name": self.name, "width": self.width, "prunable": self.prunable, "reason": self.reason,
               "members": [[m.module, m.role] for m in self.members]}
        if self.slices > 1:
            out["slices"] = self.slices
        return out


class ChannelGroups:
    """The result of :func:`find_groups`: groups in graph order and each module's channel ids."""

    def __init__(self, groups: List[ChannelGroup], records: Dict[str, ModuleRecord], position: Dict[int, Tuple[int, int]],
                 gathers: Optional[Dict[str, Gather]] = None):
        self.groups = groups
        self.records = records
        self.gathers = gathers or {}  # channel moves a pruned model replays as gathers (hakd.passes.channel_moves)
        self.by_name = {g.name: g for g in groups}
        self._index = {g.name: i for i, g in enumerate(groups)}
        n = max(position, default=-1) + 2  # the last slot answers for NO_CHANNEL (-1)
        self._group_of = np.full(n, -1, dtype=np.int64)
        self._pos_of = np.full(n, -1, dtype=np.int64)
        for i, (g, p) in position.items():
            self._group_of[i], self._pos_of[i] = g, p

    def __iter__(self):
        return iter(self.groups)

    def __len__(self):
        return len(self.groups)

    def __getitem__(self, name: str) -> ChannelGroup:
        return self.by_name[name]

    def prunable(self) -> List[ChannelGroup]:
        return [g for g in self.groups if g.prunable]

    def widths(self) -> Dict[str, int]:
        return {g.name: g.width for g in self.groups}

    def slices(self) -> Dict[str, int]:
        """The groups that come in equal slices (grouped convs), by their number of slices."""
        return {g.name: g.slices for g in self.groups if g.slices > 1}

    def plan(self, widths: Optional[Mapping[str, int]] = None, keep: Optional[Mapping[str, tuple]] = None,
             note: str = "") -> PrunePlan:
        """A plan for this model: the groups in ``widths`` keep their first channels (of each
        slice), those in ``keep`` these positions; the others keep every channel."""
        plan = PrunePlan.from_widths(dict(widths or {}), self.widths(), note, self.slices())
        return PrunePlan({**plan.keep, **(keep or {})}, plan.widths, note, plan.slices) if keep else plan

    def locate(self, ids) -> Tuple[np.ndarray, np.ndarray]:
        """(group index, channel position in the group) of each id; (-1, -1) for NO_CHANNEL."""
        ids = np.asarray(ids, dtype=np.int64).reshape(-1)
        return self._group_of[ids], self._pos_of[ids]

    def kept_ids(self, keep: Dict[str, np.ndarray]) -> np.ndarray:
        """A boolean per channel id (and True for NO_CHANNEL, the last slot): does it survive
        when each group named in ``keep`` keeps those positions? Index it with ids."""
        kept = np.ones(len(self._group_of), dtype=bool)
        for name, positions in keep.items():
            sel = self._group_of == self._index[name]
            kept[sel] = np.isin(self._pos_of[sel], positions)
        return kept

    def to_dict(self) -> dict:
        return {"groups": [g.to_dict() for g in self.groups]}

    def conv_coverage(self) -> Tuple[int, int]:
        """(conv output channels in prunable groups, all conv output channels that do not reach
        the model output): how much of a model hakd can prune. A layer called twice counts once."""
        pruned = total = 0
        # a depthwise conv's channels are its input's: counted where they are produced
        for rec in {r.module: r for r in self.records.values() if r.kind in ("conv", "grouped")}.values():
            gidx, _ = self.locate(rec.out_ids)
            for g in gidx[gidx >= 0]:
                group = self.groups[g]
                if group.prunable or "reaches the model output" not in (group.reason or ""):
                    total += 1
                    pruned += group.prunable
        return pruned, total


def find_groups(gm: fx.GraphModule) -> ChannelGroups:
    """Find the channel groups of a traced model (from :func:`hakd.passes.trace.trace`).

    Annotates every node with ``node.meta["hakd.channels"]`` (its channel labels) and
    returns the groups; the module's weights are not changed.
    """
    if not isinstance(gm, fx.GraphModule):
        raise GroupError(f"find_groups needs a GraphModule from hakd.passes.trace.trace, got a {type(gm).__name__}: "
                         "trace the model first")
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    metas = [n.meta.get("tensor_meta") for n in placeholders]
    if not placeholders or any(m is None or not hasattr(m, "shape") for m in metas):
        raise GroupError("find_groups needs a GraphModule from hakd.passes.trace.trace (with shapes in node.meta)")
    g = torch.Generator().manual_seed(0)  # distinct values: a move is checked to be a gather on them
    inputs = [torch.randn(1, *m.shape[1:], generator=g).to(m.dtype) if m.dtype.is_floating_point
              else torch.zeros(1, *m.shape[1:], dtype=m.dtype) for m in metas]
    analysis = ChannelAnalysis(gm)
    training = gm.training
    gm.eval()
    try:
        with torch.no_grad():
            analysis.run(*inputs)
    finally:
        gm.train(training)
    return _group(analysis)


def _group(a: ChannelAnalysis) -> ChannelGroups:
    """Turn tied source channels into groups, checking each is a clean channel-to-channel tie."""
    uf = a.uf
    source_uf = UnionFind()
    source_uf.add(len(a.sources))
    first_source_of_root: Dict[int, int] = {}
    for s, src in enumerate(a.sources):
        for i in range(src.base, src.base + src.width):
            root = uf.find(i)
            if root in first_source_of_root:
                source_uf.union(first_source_of_root[root], s)
            else:
                first_source_of_root[root] = s
    clusters: Dict[int, List[int]] = {}
    for s in range(len(a.sources)):
        clusters.setdefault(source_uf.find(s), []).append(s)
    groups, position = [], {}
    for cluster in clusters.values():
        lead = a.sources[cluster[0]]
        roots = [uf.find(i) for i in range(lead.base, lead.base + lead.width)]
        order = {r: k for k, r in enumerate(roots)}
        reason = None
        if len(order) != lead.width or any(a.sources[s].width != lead.width for s in cluster):
            reason = "channels are tied with an offset or across widths (e.g. adding tensors of different layouts)"
        ids = [i for s in cluster for i in range(a.sources[s].base, a.sources[s].base + a.sources[s].width)]
        reason = reason or next((a.blocked[i] for i in ids if i in a.blocked), None)
        g = len(groups)
        for i in ids:
            position[i] = (g, order.get(uf.find(i), -1))
        groups.append(ChannelGroup(lead.name, lead.width, reason is None, reason, ()))
    members: Dict[int, List[Member]] = {}
    for rec in a.records.values():
        roles = [("channel", rec.out_ids)] if rec.kind in ("norm", "depthwise") else [("in", rec.in_ids), ("out", rec.out_ids)]
        for role, ids in roles:
            for g in sorted({position[int(i)][0] for i in np.unique(ids) if i >= 0}):
                members.setdefault(g, []).append(Member(rec.module, role))
    groups = [dataclasses.replace(group, members=tuple(members.get(g, ()))) for g, group in enumerate(groups)]
    return ChannelGroups(_slice(groups, a.records, position), a.records, position, a.gathers)


def _slice(groups: List[ChannelGroup], records: Dict[str, ModuleRecord], position) -> List[ChannelGroup]:
    """Split the groups grouped convs read and write into slices (one per conv group); a
    grouped conv that reads or writes channels of several groups, or of one group out of
    order, keeps the groups it touches whole, as does one with a single channel per group."""
    slices: Dict[int, int] = {}
    why: Dict[int, str] = {}
    for rec in records.values():
        if rec.kind != "grouped":
            continue
        for ids in (rec.in_ids, rec.out_ids):
            gp = [position.get(int(i), (-1, -1)) for i in np.asarray(ids).reshape(-1)]
            gidx = {g for g, _ in gp}
            g = next(iter(gidx))
            if len(gidx) == 1 and g >= 0 and [p for _, p in gp] == list(range(groups[g].width)):
                slices[g] = math.lcm(slices.get(g, 1), rec.groups)
                if groups[g].width // slices[g] == 1:
                    why.setdefault(g, f"grouped conv {rec.module} (groups={rec.groups}) has one channel of this group "
                                      "per conv group: pruning per group would empty it")
                continue
            for g in gidx - {-1}:
                why.setdefault(g, f"grouped conv {rec.module} (groups={rec.groups}) reads or writes channels of several "
                                  "groups or of one group out of order: hakd prunes grouped convs per group only on whole groups")
    out = []
    for g, group in enumerate(groups):
        if g in why and group.prunable:
            group = dataclasses.replace(group, prunable=False, reason=why[g])
        out.append(dataclasses.replace(group, slices=slices.get(g, 1)) if g in slices else group)
    return out
