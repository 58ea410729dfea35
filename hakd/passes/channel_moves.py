"""Channel moves that a pruned model replays as a gather: channel shuffles, splits, selections.

Some data movements only make sense at the width they were written for: ShuffleNet's
channel shuffle reshapes C channels to ``(2, C/2)`` and transposes them, a ``chunk(2, dim=1)``
splits at C/2. Pruned, the same code would move other channels. But what such a *region*
of movement ops computes, at the traced width, is a fixed map from the channels of one
tensor (its *start*) to the channels of each tensor leaving it (its *ends*). Where an end is
exactly ``start.index_select(1, perm)`` (checked on the values of the analysis run), the
pruned model computes it as ``index_select(pruned start, 1, kept part of perm)``
(:func:`hakd.passes.rebuild.rebuild`), so every channel stays prunable. A region whose ends
are not such a gather of one start keeps its channels whole, with the reason.

>>> import torch
>>> from torch import nn
>>> from hakd.passes.groups import find_groups
>>> from hakd.passes.rebuild import rebuild, zero_pruned
>>> from hakd.passes.trace import trace
>>> class Shuffle(nn.Module):
...     def __init__(self):
...         super().__init__()
...         self.a, self.b, self.c = nn.Conv2d(3, 4, 1), nn.Conv2d(3, 4, 1), nn.Conv2d(8, 2, 1)
...     def forward(self, x):
...         y = torch.cat([self.a(x), self.b(x)], 1)
...         n, c, h, w = y.size()
...         return self.c(y.view(n, 2, c // 2, h, w).transpose(1, 2).reshape(n, c, h, w))  # a channel shuffle
>>> x = torch.randn(1, 3, 8, 8)
>>> gm = trace(Shuffle(), x); groups = find_groups(gm)
>>> groups["a"].prunable, groups["b"].prunable, [g.start for g in groups.gathers.values()]
(True, True, ['cat'])
>>> plan = groups.plan(keep={"a": (0, 3), "b": (1, 2, 3)})
>>> torch.allclose(rebuild(gm, groups, plan)(x), zero_pruned(gm, groups, plan, x), atol=1e-6)
True
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Set, Tuple

import numpy as np
import torch
from torch import fx

from hakd.passes import channel_ops as ops
from hakd.passes.labels import channel_vector

__all__ = ["Gather", "resolve_moves", "is_move", "gather_index"]


@dataclasses.dataclass(frozen=True)
class Gather:
    """``end`` (a node name) is ``index_select(start, 1, ...)``: the movement nodes between them
    are not run by the pruned model."""

    end: str
    start: str


def is_move(n: fx.Node) -> bool:
    if n.op == "call_function":
        return n.target in ops.MOVEMENT_FUNCTIONS
    return n.op == "call_method" and (n.target in ops.MOVEMENT_METHODS or n.target == "contiguous")


def _channels(n: fx.Node, labels, values) -> Optional[torch.Tensor]:
    """The channel ids of a tensor whose channels do not vary over its other dims, else None."""
    value, label = values.get(n), labels.get(n)
    if not isinstance(value, torch.Tensor) or not isinstance(label, torch.Tensor) or value.ndim < 2:
        return None
    return channel_vector(label, value.shape)


def _region(p: fx.Node, labels, values) -> Tuple[Set[fx.Node], List[fx.Node], Optional[str]]:
    """(the movement nodes from ``p`` up to where channels are whole channels again, the ends,
    why the region cannot be a gather or None)."""
    region, ends, todo = {p}, [], [p]
    while todo:
        q = todo.pop()
        if _channels(q, labels, values) is not None:
            ends.append(q)
            continue
        for u in q.users:
            if not is_move(u):
                return region, ends, f"{u.format_node()} reads channels in the middle of a move"
            if u not in region:
                region.add(u)
                todo.append(u)
    return region, ends, None


def _start(region: Set[fx.Node], labels, values) -> Tuple[Optional[fx.Node], Optional[str]]:
    starts = {a for q in region for a in q.all_input_nodes
              if a not in region and isinstance(values.get(a), torch.Tensor) and labels.get(a) is not None}
    if len(starts) != 1:
        return None, f"the move reads {len(starts)} tensors with channels"
    start = next(iter(starts))
    ids = _channels(start, labels, values)
    if ids is None or (ids < 0).any() or len(torch.unique(ids)) != len(ids):
        return None, "the moved tensor's channels are not distinct whole channels"
    return start, None


def resolve_moves(moves: Dict[fx.Node, tuple], labels: dict, values: dict, block) -> Dict[str, Gather]:
    """Each pending move (node -> (why it cannot be replayed as written, the labels it read))
    as gathers (end name -> Gather); a move that is not one calls ``block(label, reason)``."""
    gathers: Dict[str, Gather] = {}
    done: Set[fx.Node] = set()
    for p, (why, read) in moves.items():
        if p in done:
            continue
        region, ends, problem = _region(p, labels, values)
        start, problem = (None, problem) if problem else _start(region, labels, values)
        found = {}
        for end in [] if problem else ends:
            perm = gather_index(_channels(start, labels, values).numpy(), _channels(end, labels, values).numpy())
            if perm is None or not torch.equal(values[start].index_select(1, perm), values[end]):
                problem = f"{end.format_node()} is not a gather of the channels of {start.name}"
                break
            found[end.name] = Gather(end.name, start.name)
        done |= region
        if problem:
            block(read, f"{p.format_node()}: {why} ({problem})")
        else:
            gathers.update(found)
    return gathers


def gather_index(start_ids: np.ndarray, end_ids: np.ndarray, kept: Optional[np.ndarray] = None) -> Optional[torch.Tensor]:
    """The positions, among the start's kept channels, of the end's kept channels (``kept``: a
    boolean per channel id, as :meth:`ChannelGroups.kept_ids` gives; default every channel), or
    None when the end has a channel the start has not."""
    if kept is not None:
        start_ids, end_ids = start_ids[kept[start_ids]], end_ids[kept[end_ids]]
    where = {int(i): k for k, i in enumerate(start_ids.tolist())}
    if any(int(i) not in where for i in end_ids.tolist()):
        return None
    return torch.tensor([where[int(i)] for i in end_ids.tolist()], dtype=torch.int64)
