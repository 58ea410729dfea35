"""Carry activations between kernels in the channel-blocked layout ``NCHW{b}c``.

A Relax pass run before legalisation (:data:`hakd.cost.lower.FUSION_PIPELINE`): every dense
and depthwise float32 conv with at least ``b`` output channels computes in the blocked layout
(:mod:`hakd.cost.blocked_conv`; a 3x3 stride-1 dense conv on blocked input by Winograd's
algorithm, :mod:`hakd.cost.winograd`), and its output stays blocked through what works per channel:
elementwise ops (bias, ReLU, clip, sigmoid, residual adds, per-channel scale and shift),
pooling, a spatial mean kept 4-D (an SE gate), and channel concatenations with a blocked part
(parts that fill whole blocks are joined as they are; a part at an offset that is not a multiple
of ``b``, DenseNet's 12-channel growth, is shifted into place by one ``concat_channels`` kernel).
Anything else (a flatten into the classifier, a channel shuffle's ``take``, a grouped conv) gets
plain NCHW, unblocked once however many consumers read it; the model's input and output are plain NCHW.

Narrow activations (fewer than ``b`` channels) computed from plain ones stay plain NCHW, where
hakd's NCHW kernels fill the vector with output pixels instead (:mod:`hakd.cost.packed_conv`): a
blocked kernel would spend a whole vector on each pixel's few channels (measured: a
Torch-Pruning ResNet-56 with 8-channel layers ran 1.4x slower blocked by 16). A narrow conv
that reads a blocked input writes blocks (DenseNet's 12-channel growth after its 48-channel
bottleneck: unblocking the input for an NCHW kernel cost more than the padding), and a conv
from a narrow plain input to a wide output (the stem: 1 or 3 channels) reads the plain input
and writes blocks. A part of a model cut at an activation (:mod:`hakd.passes.neighbourhood`)
reads its inputs plain: where that changes a group's kernels, the sweep lowers the whole model
(it checks the kernels of each part against the whole model's).

A width of ``b`` or more that is not a multiple of ``b`` is padded inside its last block (zero
weights, zero bias): its kernels cost what the next multiple of ``b`` costs, so a staircase
steps at multiples of ``b`` there, at the NCHW kernels' steps below ``b``: the very kernels
that deploy.

>>> import torch
>>> from tvm import relax
>>> from tvm.relax.frontend.torch import from_fx
>>> from hakd.models import resnet20
>>> from hakd.passes.trace import trace
>>> mod = from_fx(trace(resnet20(), torch.zeros(1, 3, 32, 32)).eval(), [((1, 3, 32, 32), "float32")])
>>> mod = BlockChannels(16)(relax.transform.DecomposeOpsForInference()(mod))
>>> sorted({gv.name_hint.rstrip("0123456789") for gv in mod.get_global_vars()})  # one unblock: before the classifier
['block_channels', 'conv2d_NCHWc', 'conv2d_winograd', 'main', 'unblock_channels', 'weight_pack', 'winograd_weight']
"""

from __future__ import annotations

from typing import Dict, Optional

import tvm
from tvm import relax, te, tirx

from hakd.cost.blocked_conv import conv2d_nchwc, depthwise_nchwc
from hakd.cost.winograd import conv2d_winograd_nchwc, tile_size, winograd_weight

__all__ = ["BlockChannels", "block_channels"]

UNARY = frozenset({"relax.nn.relu", "relax.clip", "relax.sigmoid", "relax.nn.silu", "relax.tanh", "relax.nn.gelu",
                   "relax.nn.gelu_tanh", "relax.nn.leakyrelu", "relax.negative", "relax.abs", "relax.nn.relu6"})
BINARY = frozenset({"relax.add", "relax.multiply", "relax.subtract", "relax.divide", "relax.maximum", "relax.minimum"})
POOLS = frozenset({"relax.nn.max_pool2d", "relax.nn.avg_pool2d", "relax.nn.adaptive_avg_pool2d"})


def _shape(expr) -> Optional[tuple]:
    ty = getattr(expr, "ty", None)
    if not isinstance(ty, relax.TensorType) or ty.shape is None:
        return None
    try:
        return tuple(int(d) for d in ty.shape)
    except (TypeError, ValueError):  # a symbolic dimension, or an unknown rank
        return None


def _dtype(expr) -> str:
    ty = getattr(expr, "ty", None)
    return str(ty.dtype) if isinstance(ty, relax.TensorType) else ""


def _blocks(channels: int, block: int) -> int:
    return -(-channels // block)


# --- layout changes and weight packs, as TE computes (one kernel each; weight packs fold away) ---

def _to_blocked(x: te.Tensor, block: int, pad: float):
    n, c, h, w = (int(d) for d in x.shape)
    return te.compute((n, _blocks(c, block), h, w, block), lambda b, o, y, z, i: tirx.if_then_else(
        o * block + i < c, x[b, tirx.min(o * block + i, c - 1), y, z], tirx.const(pad, x.dtype)), name="block_channels")


def _to_plain(x: te.Tensor, channels: int):
    n, _, h, w, block = (int(d) for d in x.shape)
    return te.compute((n, channels, h, w), lambda b, c, y, z: x[b, c // block, y, z, c % block], name="unblock_channels")


def _concat_blocked(parts, channels, block: int):
    """Blocked parts of ``channels`` true channels each, concatenated into blocks: part ``i``'s channel
    ``k`` lands at channel ``offset_i + k`` (``offset_i``: the channels before it), whatever the offset's
    remainder by ``block``; padding lanes are zero."""
    n, _, h, w, _ = (int(d) for d in parts[0].shape)
    total, dtype = sum(channels), parts[0].dtype
    offsets = [sum(channels[:i]) for i in range(len(channels))]

    def value(b, o, y, z, i):
        c, out = o * block + i, tirx.const(0.0, dtype)
        for part, offset, count in reversed(list(zip(parts, offsets, channels))):
            # if_then_else, not Select: the simplifier drops this clamp under the condition, and only a lazy
            # branch (scalarised by TVM: the condition varies by lane) then keeps the read inside the part
            k = tirx.max(tirx.min(c - offset, count - 1), 0)
            out = tirx.if_then_else(tirx.all(offset <= c, c < offset + count), part[b, k // block, y, z, k % block], out)
        return out

    return te.compute((n, _blocks(total, block), h, w, block), value, name="concat_channels")


def _pack_dense(weight: te.Tensor, block: int, blocked_input: bool):
    out_channels, in_channels, kh, kw = (int(d) for d in weight.shape)

    def value(o, i):
        ok = o < out_channels if not blocked_input else tirx.all(o < out_channels, i < in_channels)
        return lambda *hw: tirx.if_then_else(ok, weight[tirx.min(o, out_channels - 1), tirx.min(i, in_channels - 1), hw[0], hw[1]],
                                             tirx.const(0.0, weight.dtype))

    if blocked_input:
        return te.compute((_blocks(out_channels, block), _blocks(in_channels, block), kh, kw, block, block),
                          lambda ob, ib, y, x, ii, oi: value(ob * block + oi, ib * block + ii)(y, x), name="weight_pack")
    return te.compute((_blocks(out_channels, block), in_channels, kh, kw, block),
                      lambda ob, i, y, x, oi: value(ob * block + oi, i)(y, x), name="weight_pack")


def _pack_depthwise(weight: te.Tensor, block: int):
    channels, _, kh, kw = (int(d) for d in weight.shape)
    return te.compute((_blocks(channels, block), kh, kw, block), lambda cb, y, x, ci: tirx.if_then_else(
        cb * block + ci < channels, weight[tirx.min(cb * block + ci, channels - 1), 0, y, x], tirx.const(0.0, weight.dtype)),
        name="weight_pack")


def _winograd_tile(data_shape, weight_shape, conv, block: int) -> int:
    """``m`` of the Winograd conv computing a dense conv on blocked channels, 0 for a direct one:
    3x3 kernels of stride and dilation 1 only (:func:`hakd.cost.winograd.tile_size`)."""
    if weight_shape[2:] != (3, 3) or conv["strides"] != [1, 1] or conv["dilation"] != [1, 1]:
        return 0
    top, left, bottom, right = conv["padding"]
    return tile_size(data_shape[2] + top + bottom - 2, data_shape[3] + left + right - 2, weight_shape[1], weight_shape[0], block)


class _Blocker:
    """Rewrites one function's bindings; ``channels`` maps each blocked var to its true channel count."""

    def __init__(self, bb: relax.BlockBuilder, block: int):
        self.bb, self.block = bb, block
        self.new: Dict[relax.Var, relax.Expr] = {}
        self.channels: Dict[relax.Var, int] = {}
        self._plain: Dict[relax.Var, relax.Var] = {}
        self._blocked: Dict[tuple, relax.Var] = {}
        self._handlers = {"relax.nn.conv2d": self._conv2d, "relax.concat": self._concat, "relax.mean": self._mean,
                          **{op: self._unary for op in UNARY}, **{op: self._binary for op in BINARY},
                          **{op: self._pool for op in POOLS}}

    # conversions (memoised: one per value, however many consumers)
    def plain(self, expr):
        if isinstance(expr, relax.Tuple):
            return relax.Tuple([self.plain(f) for f in expr.fields])
        if expr not in self.channels:
            return expr
        if expr not in self._plain:
            self._plain[expr] = self.bb.emit_te(_to_plain, expr, self.channels[expr], primfunc_name_hint="unblock_channels")
        return self._plain[expr]

    def blocked(self, expr, pad: float = 0.0):
        if expr in self.channels:
            return expr
        key = (expr, pad)
        if key not in self._blocked:
            self._blocked[key] = self.bb.emit_te(_to_blocked, expr, self.block, pad, primfunc_name_hint="block_channels")
            self.channels[self._blocked[key]] = _shape(expr)[1]
        return self._blocked[key]

    def _mark(self, var, channels: int):
        self.channels[var] = channels
        return var

    # rewriting
    def arg(self, a):
        if isinstance(a, relax.Tuple):
            return relax.Tuple([self.arg(f) for f in a.fields])
        return self.new.get(a, a) if isinstance(a, relax.Var) else a

    def rewrite(self, value):
        """The new value of a binding: blocked where its op works per channel, else on plain inputs."""
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op):
            handler = self._handlers.get(value.op.name)
            if handler is not None:
                out = handler(value)
                if out is not None:
                    return out
            return self.bb.emit(relax.Call(value.op, [self.plain(self.arg(a)) for a in value.args], value.attrs, value.ty_args))
        if isinstance(value, relax.Tuple):
            return self.bb.emit(self.plain(self.arg(value)))
        if isinstance(value, relax.TupleGetItem):
            return self.bb.emit(relax.TupleGetItem(self.plain(self.arg(value.tuple_value)), value.index))
        if isinstance(value, relax.Var):
            return self.arg(value)
        return self.bb.emit(value)

    def _conv2d(self, call):
        a = call.attrs
        data, weight = call.args
        data_shape, weight_shape = _shape(data), _shape(weight)
        if (data_shape is None or weight_shape is None or a.data_layout != "NCHW" or a.kernel_layout != "OIHW"
                or a.out_layout not in ("NCHW", "") or _dtype(data) != "float32" or _dtype(weight) != "float32"
                or a.out_dtype not in ("", "float32")):
            return None
        conv = dict(strides=[int(s) for s in a.strides], padding=[int(p) for p in a.padding],
                    dilation=[int(d) for d in a.dilation])
        x, w, groups = self.arg(data), self.arg(weight), int(a.groups)
        if weight_shape[0] < self.block and x not in self.channels:  # narrow from plain: NCHW kernels (the plain path)
            return None
        if groups == 1:
            blocked_input = x in self.channels or data_shape[1] >= self.block  # a narrow input is read plain
            x = self.blocked(x) if blocked_input else x
            m = _winograd_tile(data_shape, weight_shape, conv, self.block) if blocked_input else 0
            if m:
                packed = self.bb.emit_te(winograd_weight, w, m, self.block, primfunc_name_hint="winograd_weight")
                out = self.bb.emit_te(conv2d_winograd_nchwc, x, packed, conv["padding"], m, primfunc_name_hint="conv2d_winograd")
                return self._mark(out, weight_shape[0])
            packed = self.bb.emit_te(_pack_dense, w, self.block, blocked_input, primfunc_name_hint="weight_pack")
            out = self.bb.emit_te(conv2d_nchwc, x, packed, conv["strides"], conv["padding"], conv["dilation"],
                                  primfunc_name_hint="conv2d_NCHWc")
            return self._mark(out, weight_shape[0])
        if groups == data_shape[1] == weight_shape[0] and weight_shape[1] == 1:
            packed = self.bb.emit_te(_pack_depthwise, w, self.block, primfunc_name_hint="weight_pack")
            out = self.bb.emit_te(depthwise_nchwc, self.blocked(x), packed, conv["strides"], conv["padding"],
                                  conv["dilation"], primfunc_name_hint="depthwise_conv2d_NCHWc")
            return self._mark(out, weight_shape[0])
        return None

    def _unary(self, call):
        x = self.arg(call.args[0])
        if x not in self.channels:
            return None
        rest = list(call.args[1:])  # clip's bounds
        return self._mark(self.bb.emit(relax.Call(call.op, [x, *rest], call.attrs, call.ty_args)), self.channels[x])

    def _binary(self, call):
        args = [self.arg(a) for a in call.args]
        blocked = [a for a in args if a in self.channels]
        if not blocked:
            return None
        channels = self.channels[blocked[0]]
        full = _shape(call)
        out = []
        for i, a in enumerate(args):
            shape = _shape(a) if a not in self.channels else None
            if a in self.channels:
                if self.channels[a] != channels:
                    return None
                out.append(a)
            elif shape is not None and all(d == 1 for d in shape):  # a scalar broadcasts in either layout
                out.append(a)
            elif (shape is not None and len(shape) == 4 and full is not None and shape[1] == channels
                  and shape[0] in (1, full[0]) and shape[2] in (1, full[2]) and shape[3] in (1, full[3])):
                divisor = call.op.name == "relax.divide" and i == 1
                out.append(self.blocked(a, 1.0 if divisor else 0.0))  # a divisor's padding must not divide by zero
            else:
                return None
        return self._mark(self.bb.emit(relax.Call(call.op, out, call.attrs, call.ty_args)), channels)

    def _pool(self, call):
        x = self.arg(call.args[0])
        if x not in self.channels or call.attrs.layout != "NCHW":
            return None
        a, layout = call.attrs, f"NCHW{self.block}c"
        if call.op.name == "relax.nn.adaptive_avg_pool2d":
            out = relax.op.nn.adaptive_avg_pool2d(x, a.output_size, layout, layout)
        else:
            pool = relax.op.nn.max_pool2d if call.op.name == "relax.nn.max_pool2d" else relax.op.nn.avg_pool2d
            out = pool(x, a.pool_size, a.strides, a.padding, a.dilation, bool(a.ceil_mode), bool(a.count_include_pad),
                       layout, layout)
        return self._mark(self.bb.emit(out), self.channels[x])

    def _mean(self, call):
        x = self.arg(call.args[0])
        axes = sorted(int(ax) % 4 for ax in call.attrs.axis) if call.attrs.axis is not None else None
        if x not in self.channels or axes != [2, 3] or not call.attrs.keepdims:
            return None
        return self._mark(self.bb.emit(relax.op.mean(x, [2, 3], keepdims=True)), self.channels[x])

    def _concat(self, call):
        parts = self.arg(call.args[0])
        if not isinstance(parts, relax.Tuple) or int(call.attrs.axis) % 4 != 1:
            return None
        fields = list(parts.fields)
        if not any(f in self.channels for f in fields) or any(_shape(f) is None or _dtype(f) != "float32" for f in fields):
            return None
        fields = [self.blocked(f) for f in fields]
        channels = [self.channels[f] for f in fields]
        if all(c % self.block == 0 for c in channels[:-1]):  # every part starts on a block: blocks concatenated as they are
            out = self.bb.emit(relax.op.concat(fields, axis=1))
        else:
            out = self.bb.emit_te(_concat_blocked, fields, channels, self.block, primfunc_name_hint="concat_channels")
        return self._mark(out, sum(channels))


def block_channels(mod: tvm.IRModule, block: int) -> tvm.IRModule:
    """``mod`` with ``main``'s convs and what follows them in ``NCHW{block}c`` (see the module's docstring)."""
    func = mod["main"]
    bb = relax.BlockBuilder(tvm.IRModule({gv: f for gv, f in mod.functions.items() if gv.name_hint != "main"}))
    blocker = _Blocker(bb, block)
    body = func.body
    with bb.function("main", list(func.params), attrs=dict(func.attrs or {}), pure=func.is_pure):
        with bb.dataflow():
            for bindings in body.blocks:
                for binding in bindings.bindings:
                    new = blocker.rewrite(binding.value)
                    if isinstance(binding.var, relax.DataflowVar):
                        blocker.new[binding.var] = new
                    else:
                        blocker.new[binding.var] = bb.emit_output(blocker.plain(new))
        bb.emit_func_output(blocker.plain(blocker.arg(body.body)))
    return bb.get()


@tvm.transform.module_pass(opt_level=0, name="hakd.BlockChannels")
class BlockChannels:
    """Module pass: :func:`block_channels`."""

    def __init__(self, block: int):
        self.block = block

    def transform_module(self, mod: tvm.IRModule, ctx) -> tvm.IRModule:
        return block_channels(mod, self.block)
