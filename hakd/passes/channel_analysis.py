"""The channel-label interpreter behind :func:`hakd.passes.groups.find_groups`.

It runs a traced graph on a batch-1 input and computes, beside every value, its channel
labels (see :mod:`hakd.passes.labels`); sources, ties (union-find over channel ids),
blocked channels with their reasons, and each parameterised module's channel ids are
collected for grouping.
"""

from __future__ import annotations

import dataclasses
from typing import Dict, List, Optional, Tuple

import numpy as np
import torch
from torch import fx, nn

from hakd.errors import GroupError
from hakd.layer_types import FUNCTIONAL_LAYERS, functional_args, functional_params, is_drop_path
from hakd.passes import channel_ops as ops
from hakd.passes.channel_moves import Gather, resolve_moves
from hakd.passes.labels import NO_CHANNEL, channel_vector, compress, feature_vector, uniform_except

__all__ = ["ChannelAnalysis", "UnionFind", "ModuleRecord", "META_KEY"]

META_KEY = "hakd.channels"


@dataclasses.dataclass
class ModuleRecord:
    """The channel ids a parameterised module reads and writes (for rebuilding it)."""

    module: str
    kind: str  # "conv", "grouped", "depthwise", "linear", "norm"
    in_ids: np.ndarray
    out_ids: np.ndarray
    groups: int = 1  # a grouped conv's groups: its input and output channels come in this many slices
    params: Tuple[str, ...] = ()  # a functional conv or linear (F.conv2d): its weight and bias, by path


class UnionFind:
    def __init__(self):
        self.parent: List[int] = []

    def add(self, n: int) -> int:
        base = len(self.parent)
        self.parent.extend(range(base, base + n))
        return base

    def find(self, i: int) -> int:
        root = i
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[i] != root:
            self.parent[i], i = root, self.parent[i]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)


@dataclasses.dataclass
class _Source:
    name: str
    base: int
    width: int


class ChannelAnalysis(fx.Interpreter):
    """Runs the graph on a batch-1 input, computing each node's channel label beside its value."""

    def __init__(self, gm: fx.GraphModule):
        super().__init__(gm, garbage_collect_values=False)  # moves are checked on the values after the run
        self.uf = UnionFind()
        self.sources: List[_Source] = []
        self.source_of_module: Dict[str, _Source] = {}
        self.in_ids_of_module: Dict[str, torch.Tensor] = {}  # of a module's first call
        self.blocked: Dict[int, str] = {}  # id -> why its group cannot be pruned
        self.records: Dict[str, ModuleRecord] = {}
        self.labels: Dict[fx.Node, object] = {}
        self.moves: Dict[fx.Node, tuple] = {}  # moves written for this width: node -> (why, labels it read)
        self.gathers: Dict[str, Gather] = {}  # the moves a pruned model replays as gathers, by end node

    def run(self, *inputs):
        out = super().run(*inputs)
        self.gathers = resolve_moves(self.moves, self.labels, self.env, self.block)
        return out

    # ---- sources and marks
    def new_source(self, name: str, width: int, blocked: Optional[str] = None) -> torch.Tensor:
        src = _Source(name, self.uf.add(width), width)
        self.sources.append(src)
        ids = torch.arange(src.base, src.base + width)
        if blocked:
            self.block(ids, blocked)
        return ids

    def block(self, label, reason: str) -> None:
        for t in _tensors(label):
            for i in torch.unique(t).tolist():
                if i != NO_CHANNEL:
                    self.blocked.setdefault(i, reason)

    def tie(self, a: torch.Tensor, b: torch.Tensor) -> None:
        both = (a >= 0) & (b >= 0)
        if both.any():
            base = len(self.uf.parent)
            for code in torch.unique(a[both] * base + b[both]).tolist():
                self.uf.union(code // base, code % base)

    # ---- the interpreter
    def run_node(self, n: fx.Node):
        value = super().run_node(n)
        try:
            label = self.label_node(n, value)
        except GroupError:
            raise
        except Exception as e:  # a label computation that fails means we do not understand the op
            label = self.opaque(n, value, f"channel analysis failed ({type(e).__name__}: {e})")
        self.labels[n] = label
        n.meta[META_KEY] = label
        return value

    def label_of(self, arg):
        return fx.node.map_aggregate(arg, lambda a: self.labels.get(a) if isinstance(a, fx.Node) else None)

    def opaque(self, n: fx.Node, value, why: str):
        self.block(self.label_of((n.args, n.kwargs)), f"{n.format_node()}: {why}")
        return self.output_source(n, value, f"{n.format_node()}: output of an operation hakd does not model")

    def output_source(self, n: fx.Node, value, blocked: Optional[str] = None):
        if isinstance(value, torch.Tensor) and value.ndim >= 2:
            ids = self.new_source(n.name, value.shape[1], blocked)
            return ids.view(1, -1, *[1] * (value.ndim - 2))
        if isinstance(value, (tuple, list)):
            return type(value)(self.output_source(n, v, blocked) for v in value)
        return None

    def label_node(self, n: fx.Node, value):
        if n.op == "placeholder":
            return self.output_source(n, value, "model input")
        if n.op == "get_attr":
            if all(n in functional_params(u) for u in n.users):  # the weights of F.conv2d / F.linear
                return None
            if isinstance(value, torch.Tensor) and value.ndim >= 2 and value.shape[1] > 1:
                return self.output_source(n, value, f"parameter {n.target} is used as an activation")
            return None
        if n.op == "output":
            self.block(self.label_of(n.args), "reaches the model output")
            return None
        if n.op == "call_module":
            return self.label_module(n, self.fetch_attr(n.target), value)
        if functional_params(n):
            return self.label_functional(n, value)
        name = n.target
        if n.op == "call_method" and name in ("size", "dim", "numel") or not _tensors(value):
            return None
        if name in ops.BINARY_FUNCTIONS or (n.op == "call_method" and name in ops.BINARY_METHODS):
            return self.label_binary(n, value)
        if name in ops.CHANNELWISE_FUNCTIONS or (n.op == "call_method" and name in ops.CHANNELWISE_METHODS):
            return self.label_channelwise(n, self.label_of(n.args[0]), n.args[0], value)
        if n.op == "call_function" and is_drop_path(name):  # torchvision's stochastic_depth (fx-wrapped)
            return self.label_channelwise(n, self.label_of(n.args[0]), n.args[0], value)
        if name in ops.REDUCTIONS or (n.op == "call_method" and name in ("mean", "sum", "amax")):
            return self.label_reduction(n, value)
        if name in ops.MOVEMENT_FUNCTIONS or (n.op == "call_method" and name in ops.MOVEMENT_METHODS):
            return self.label_movement(n, value)
        return self.opaque(n, value, f"{ops.op_name(n.target)} is not an operation hakd models")

    def label_module(self, n: fx.Node, m: nn.Module, value):
        x = n.args[0] if n.args else None
        label, real = self.label_of(x), self.env_value(x)
        if isinstance(m, nn.Conv2d):
            return self.label_conv(n, m, label, real, value)
        if isinstance(m, nn.Linear):
            feats = None if label is None else feature_vector(label, real.shape)
            if feats is None:
                return self.opaque(n, value, "its input features do not map to channels")
            return self.produce(n, m, "linear", feats, value)
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            vec = None if label is None else channel_vector(label, real.shape)
            if vec is None:
                return self.opaque(n, value, "its channels vary over space")
            self.record(n, "norm", vec, vec)
            return label
        if isinstance(m, nn.Flatten):
            return self.label_movement(n, value, lambda t: torch.flatten(t, m.start_dim, m.end_dim), m.start_dim)
        if isinstance(m, ops.CHANNELWISE_MODULES) or is_drop_path(m):
            return self.label_channelwise(n, label, x, value)
        return self.opaque(n, value, f"module type {type(m).__name__} is not one hakd models")

    def label_conv(self, n, m: nn.Conv2d, label, real, value):
        vec = None if label is None else channel_vector(label, real.shape)
        if vec is None:
            return self.opaque(n, value, "its input channels vary over space")
        if m.groups == 1:
            return self.produce(n, m, "conv", vec, value)
        if m.groups == m.in_channels == m.out_channels:
            self.record(n, "depthwise", vec, vec)
            return vec.view(1, -1, 1, 1)
        out = self.produce(n, m, "grouped", vec, value)  # pruned per slice: see hakd.passes.groups
        self.records[n.name].groups = m.groups
        return out

    def label_functional(self, n, value):
        """``F.conv2d`` / ``F.linear`` whose weight (and bias) are parameters: a layer like a module's."""
        args = functional_args(n)
        weight, bias, groups = args["weight"], args["bias"], args.get("groups", 1)
        kind = FUNCTIONAL_LAYERS[n.target][0]
        if any(p is not None and not (isinstance(p, fx.Node) and p.op == "get_attr") for p in (weight, bias)):
            return self.opaque(n, value, "a functional conv or linear whose weights are computed, not parameters")
        if kind == "conv" and groups != 1:
            return self.opaque(n, value, f"a functional grouped conv (groups={groups}) is kept whole; "
                                         "write it as an nn.Conv2d to prune it")
        x = n.args[0]
        label, real = self.label_of(x), self.env_value(x)
        to_vec = channel_vector if kind == "conv" else feature_vector
        vec = None if label is None else to_vec(label, real.shape)
        if vec is None:
            return self.opaque(n, value, "its input channels vary over space")
        params = tuple(p.target for p in (weight, bias) if p is not None)
        return self.produce(n, None, kind, vec, value, qual=params[0], params=params)

    def produce(self, n, m, kind: str, in_ids: torch.Tensor, value, qual: Optional[str] = None, params=()):
        """A conv or linear: a new source (the same ids each time a shared module is called).
        A functional one (``params``: its weight and bias paths) is named by its weight and
        owned, like its kernels, by the weight's module."""
        qual = qual or n.target
        if qual in self.source_of_module:
            src = self.source_of_module[qual]
            self.tie(self.in_ids_of_module[qual], in_ids)
            out = torch.arange(src.base, src.base + src.width)
        else:
            out = self.new_source(qual, value.shape[-1 if kind == "linear" else 1])
            self.source_of_module[qual] = self.sources[-1]
            self.in_ids_of_module[qual] = in_ids
        self.record(n, kind, in_ids, out, params)
        return out.view(*[1] * (value.ndim - 1), -1) if kind == "linear" else out.view(1, -1, *[1] * (value.ndim - 2))

    def record(self, n, kind, in_ids, out_ids, params=()):
        module = params[0].rsplit(".", 1)[0] if params else n.target  # a parameter's module, as hakd.cost names it
        self.records[n.name] = ModuleRecord(module, kind, np.asarray(in_ids), np.asarray(out_ids), params=tuple(params))

    def label_channelwise(self, n, label, x, value):
        if label is None:
            return None
        real = self.env_value(x)
        if isinstance(real, torch.Tensor) and tuple(real.shape) == tuple(value.shape):
            return label
        reduced = channel_vector(label, real.shape)
        if reduced is None or value.ndim < 2 or value.shape[1] != len(reduced):
            return self.opaque(n, value, "changes the shape of channels that vary over space")
        return reduced.view(1, -1, *[1] * (value.ndim - 2))

    def label_binary(self, n, value):
        a, b = (self.labels.get(x) if isinstance(x, fx.Node) else None for x in (list(n.args) + [None])[:2])
        if a is None or b is None:
            return a if b is None else b
        shape = torch.broadcast_shapes(a.shape, b.shape)  # labels are broadcastable forms of the operands
        la, lb = a.expand(shape), b.expand(shape)
        self.tie(la, lb)
        return compress(torch.where(la >= 0, la, lb))

    def label_reduction(self, n, value):
        x = n.args[0]
        label, real = self.labels.get(x), self.env_value(x)
        if label is None:
            return None
        dims = n.kwargs.get("dim", n.args[1] if len(n.args) > 1 else None)
        keep = n.kwargs.get("keepdim", n.args[2] if len(n.args) > 2 else False)
        dims = tuple(d % real.ndim for d in ((dims,) if isinstance(dims, int) else dims or ()))
        if not dims or 0 in dims or 1 in dims:
            return self.opaque(n, value, "reduces over channels")
        reduced = uniform_except(label, (1, *real.shape[1:]), keep=tuple(d for d in range(real.ndim) if d not in dims))
        if reduced is None:
            return self.opaque(n, value, "reduces over dims where channels vary")
        return reduced if keep else reduced.squeeze(dims)

    def label_movement(self, n, value, fn=None, start_dim=None):
        args = fx.node.map_aggregate(n.args, lambda a: self.movement_arg(a))
        kwargs = fx.node.map_aggregate(n.kwargs, lambda a: self.movement_arg(a))
        if fn is not None:
            label = fn(args[0])
        elif n.target is torch.index_select:  # its index is data, not a tensor with channels
            label = torch.index_select(args[0], n.args[1], self.env_value(n.args[2]))
        elif n.op == "call_method":
            label = getattr(args[0], n.target)(*args[1:], **kwargs)
        else:
            label = n.target(*args, **kwargs)
        why = self.movement_problem(n, start_dim)
        if why:  # blocked after the run unless a gather replays it (hakd.passes.channel_moves)
            self.moves[n] = (why, self.label_of((n.args, n.kwargs)))
        return fx.node.map_aggregate(label, lambda t: compress(t) if isinstance(t, torch.Tensor) else t)

    def movement_arg(self, a):
        if not isinstance(a, fx.Node):
            return a
        label, real = self.labels.get(a), self.env_value(a)
        if isinstance(real, torch.Tensor):
            if label is None:
                return torch.full(real.shape, NO_CHANNEL, dtype=torch.int64)
            return label.expand(real.shape).contiguous()
        if isinstance(real, (tuple, list)) and isinstance(label, (tuple, list)):
            return type(real)(l.expand(r.shape).contiguous() for l, r in zip(label, real))
        return real

    def movement_problem(self, n: fx.Node, start_dim=None) -> Optional[str]:
        """Why this movement could not be replayed at other widths, or None if it can."""
        kind = ops.MOVEMENT_FUNCTIONS.get(n.target, n.target if n.op == "call_method" else "flatten")
        x = self.env_value(n.args[0]) if n.args else None
        nd = x.ndim if isinstance(x, torch.Tensor) else 0
        arg = lambda i, key, default=None: n.kwargs.get(key, n.args[i] if len(n.args) > i else default)
        if kind == "cat" or kind in ("expand_as", "view_as", "reshape_as"):
            return None
        if kind == "flatten":
            start = start_dim if start_dim is not None else arg(1, "start_dim", 0)
            return None if start % max(nd, 1) >= 1 else "flattens the batch and channel dims together"
        if kind in ("view", "reshape", "expand"):
            shape = n.args[1:] if n.op == "call_method" else arg(1, "shape")
            if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
                shape = shape[0]
            fixed = [s for s in list(shape)[1:] if isinstance(s, int) and s not in (-1, 1)]
            return None if not fixed else f"reshapes channels to the fixed sizes {fixed} (e.g. a channel shuffle)"
        if kind in ("split", "chunk"):
            return None if arg(2, "dim", 0) % nd != 1 else "splits channels at fixed positions"
        if kind == "transpose":
            return None if 1 not in (arg(1, "dim0") % nd, arg(2, "dim1") % nd) else "transposes the channel dim"
        if kind == "index_select":
            return None if arg(1, "dim") % nd != 1 else "selects channels by position"
        if kind == "permute":
            dims = n.args[1:] if n.op == "call_method" else arg(1, "dims")
            dims = dims[0] if len(dims) == 1 and isinstance(dims[0], (tuple, list)) else dims
            return None if dims[1] % nd == 1 else "permutes the channel dim"
        if kind == "unsqueeze":
            return None if arg(1, "dim") % (nd + 1) >= 2 else "moves the channel dim"
        if kind == "squeeze":
            d = arg(1, "dim")
            return None if d is not None and d % nd != 1 else "may squeeze the channel dim away"
        if kind == "getitem":
            if not isinstance(x, torch.Tensor):
                return None  # picking one output of a split or chunk
            idx = n.args[1]
            ok = isinstance(idx, tuple) and len(idx) >= 2 and idx[1] == slice(None) and idx[0] == slice(None)
            return None if ok else "indexes into the channel dim"
        return "moves channels in a way hakd does not model"

    def env_value(self, a):
        return self.env.get(a) if isinstance(a, fx.Node) else a


def _tensors(x) -> List[torch.Tensor]:
    if isinstance(x, torch.Tensor):
        return [x]
    if isinstance(x, (tuple, list)):
        return [t for v in x for t in _tensors(v)]
    if isinstance(x, dict):
        return [t for v in x.values() for t in _tensors(v)]
    return []
