"""Lower a traced model to fused TVM kernels, the way hakd compiles it for deployment.

BatchNorm is folded into the preceding conv in PyTorch (exact in eval mode, and it
avoids TVM 0.27's training-mode batch_norm import), any other BatchNorm becomes a
per-channel scale and shift; the Relax pipeline then fuses
conv + bias + residual add + ReLU into one kernel. Each fused kernel is identified
by a signature (its kind, argument shapes and TVM structural hash) that is the same
wherever the kernel appears: in another layer, another width, or the deployed model.

>>> import torch
>>> from hakd.models import resnet20
>>> from hakd.passes.trace import trace
>>> low = lower(trace(resnet20(), torch.zeros(1, 3, 32, 32)))
>>> k = next(k for k in low.for_module("layers.0.conv2") if k.kind == "conv2d")
>>> k.kind, k.calls, k.name
('conv2d', 3, 'fused_conv2d1_add_add1_relu')
"""

from __future__ import annotations

import copy
from collections import Counter
import math
import operator
import dataclasses
from typing import Dict, List, Tuple

import torch
import tvm
import tvm_ffi
from torch import fx
from torch.nn.utils.fusion import fuse_conv_bn_weights
from tvm import relax
from tvm.relax.frontend.torch import from_fx

from hakd.cost.inline import inline_for_import
from hakd.cost.layout import BlockChannels
from hakd.cost.packed_conv import LEGALIZE
from hakd.cost.schedules import kernel_kind
from hakd import interrupt
from hakd.errors import HakdError

__all__ = ["Kernel", "Lowered", "LowerError", "lower", "fold_batchnorm", "FUSION_PIPELINE"]


class LowerError(HakdError):
    """TVM cannot import or fuse a model."""


@dataclasses.dataclass
class Kernel:
    """One fused kernel of a lowered model."""

    name: str
    func: "tvm.tirx.PrimFunc"
    kind: str
    shapes: Tuple[Tuple[int, ...], ...]
    signature: str
    call_modules: Tuple[Tuple[str, ...], ...] = ()  # per call: the fx modules whose weights it reads
    weight_args: Tuple[int, ...] = ()  # positions of the arguments that are weights (the rest: activations, output last)
    dtypes: Tuple[str, ...] = ()  # of each argument (empty: every one float32)

    @property
    def calls(self) -> int:
        return len(self.call_modules)

    @property
    def activation_args(self) -> Tuple[int, ...]:
        """Positions of the inputs computed by earlier kernels of the model."""
        return tuple(i for i in range(len(self.shapes) - 1) if i not in self.weight_args)

    @property
    def hot_args(self) -> Tuple[int, ...]:
        """Positions of the arguments in cache when the model calls this kernel: the inputs earlier
        kernels just wrote, and the output, a buffer the memory plan hands on from kernels just run.
        Kept hot in a ``reuse-`` cache context, the output brought predicted / measured from 1.03-1.08
        to 1.01-1.03 on DenseNet-BC-40 and from 1.08-1.12 to 1.07-1.10 on ResNet-56 (2026-12-03)."""
        return (*self.activation_args, len(self.shapes) - 1)

    @property
    def modules(self) -> Tuple[str, ...]:
        return tuple(dict.fromkeys(m for call in self.call_modules for m in call))


@dataclasses.dataclass
class Lowered:
    """A fused Relax module and its kernels, by global name."""

    mod: "tvm.IRModule"
    kernels: Dict[str, Kernel]
    input_shape: Tuple[int, ...]

    @property
    def calls(self) -> int:
        return sum(k.calls for k in self.kernels.values())

    @property
    def footprint_bytes(self) -> int:
        """Bytes one inference writes or reads for the first time (every call's weights and
        output): the data that streams through the caches between two calls of a kernel."""
        return sum(4 * math.prod(k.shapes[i]) * k.calls for k in self.kernels.values()
                   for i in (*k.weight_args, len(k.shapes) - 1))

    def for_module(self, module: str) -> List[Kernel]:
        return [k for k in self.kernels.values() if module in k.modules]


def FUSION_PIPELINE(block: int = 0) -> tvm.transform.Pass:
    """The Relax passes hakd runs on every model, for measuring and for export alike: with a
    channel ``block``, activations of ``block`` channels or more in ``NCHW{block}c`` between
    kernels (:mod:`hakd.cost.layout`); otherwise, and with 0, plain NCHW with dense convs
    legalised with packed weights (:mod:`hakd.cost.packed_conv`)."""
    t = relax.transform
    layout = [BlockChannels(block), t.CanonicalizeBindings()] if block else []
    return tvm.transform.Sequential([
        t.DecomposeOpsForInference(), t.CanonicalizeBindings(), t.DeadCodeElimination(), *layout, t.LegalizeOps(LEGALIZE),
        t.AnnotateTIROpPattern(), t.FoldConstant(), t.FuseOps(), t.FuseTIR(), t.DeadCodeElimination(),
    ])


def fold_batchnorm(gm: fx.GraphModule) -> fx.GraphModule:
    """A copy of ``gm`` in eval mode with every conv -> BatchNorm pair folded into one conv
    (a subclass of Conv2d too), and every other BatchNorm2d as ``x * scale + shift``
    (:func:`_as_channel_affine`)."""
    folded = copy.deepcopy(gm).eval()
    calls = Counter(n.target for n in folded.graph.nodes if n.op == "call_module")
    for node in list(folded.graph.nodes):
        if node.op != "call_module" or not isinstance(folded.get_submodule(node.target), torch.nn.BatchNorm2d):
            continue
        bn, conv_node = folded.get_submodule(node.target), node.args[0]
        conv = folded.get_submodule(conv_node.target) if isinstance(conv_node, fx.Node) and conv_node.op == "call_module" else None
        if (isinstance(conv, torch.nn.Conv2d) and len(conv_node.users) == 1 and calls[conv_node.target] == 1
                and bn.track_running_stats and bn.running_mean is not None):
            weight, bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var, bn.eps, bn.weight, bn.bias)
            conv.weight, conv.bias = weight, bias
            node.replace_all_uses_with(conv_node)
            folded.graph.erase_node(node)
        else:
            _as_channel_affine(folded, node)
    folded.recompile()
    return folded


def _as_channel_affine(gm: fx.GraphModule, node: fx.Node) -> None:
    """Replace a BatchNorm2d not after a conv (DenseNet's after a concat, a pre-activation
    block's) by ``x * scale + shift``, its parameters shaped (1, C, 1, 1) in a module at the
    BatchNorm's path. TVM imports BatchNorm's 1-D weights reshaped inside the fused kernel
    when weights are inputs and folded away when they are bound: two different kernels, so
    the kernel measured would not be the kernel deployed. In this form both are one kernel."""
    bn = gm.get_submodule(node.target)
    if bn.running_mean is None:  # no running statistics: eval mode normalises by the batch's
        return
    with torch.no_grad():
        scale = (bn.weight if bn.affine else 1.0) / torch.sqrt(bn.running_var + bn.eps)
        shift = (bn.bias if bn.affine else 0.0) - bn.running_mean * scale
    affine = torch.nn.Module()
    affine.scale = torch.nn.Parameter(scale.reshape(1, -1, 1, 1).clone())
    affine.shift = torch.nn.Parameter(shift.reshape(1, -1, 1, 1).clone())
    parent, _, name = node.target.rpartition(".")
    setattr(gm.get_submodule(parent), name, affine)
    with gm.graph.inserting_before(node):
        scaled = gm.graph.call_function(operator.mul, (node.args[0], gm.graph.get_attr(f"{node.target}.scale")))
        out = gm.graph.call_function(operator.add, (scaled, gm.graph.get_attr(f"{node.target}.shift")))
    node.replace_all_uses_with(out)
    gm.graph.erase_node(node)


def signature(func, kind: str, shapes) -> str:
    """``kind|shapes|hash``: equal for structurally equal kernels, in any model or process."""
    shape_text = ";".join("x".join(map(str, s)) for s in shapes)
    return f"{kind}|{shape_text}|{tvm_ffi.structural_hash(func.without_attr('global_symbol')):016x}"


def lower(gm: fx.GraphModule, input_shape=None, bind_params: bool = False, block: int = 0) -> Lowered:
    """Fold BN, import into Relax, fuse; activations in ``NCHW{block}c`` between kernels when
    ``block`` (a target's :attr:`~hakd.cost.target.TargetSpec.channel_block`; 0: plain NCHW,
    as in the example above). ``bind_params=True`` embeds the weights as constants
    (what :mod:`hakd.export` deploys); otherwise they are inputs, which lowers ~6x faster and
    gives the same fused kernels. Kernels that only transform weights (deployment folds them
    into constants) are left out of ``kernels``. A GraphModule with several inputs (a part of
    a model, :func:`hakd.passes.neighbourhood.neighbourhood`) takes their traced shapes."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    if input_shape is not None and len(placeholders) == 1:
        shapes = [tuple(int(s) for s in input_shape)]
    elif all(n.meta.get("tensor_meta") is not None for n in placeholders):  # traced (several: a part of a model)
        shapes = [tuple(int(s) for s in n.meta["tensor_meta"].shape) for n in placeholders]
    else:
        raise LowerError("lower() needs an input_shape or a GraphModule from hakd.passes.trace.trace")
    input_shape = shapes[0]
    folded = fold_batchnorm(gm)
    try:
        inline_for_import(folded)
        with torch.no_grad():
            mod = from_fx(folded, [(s, "float32") for s in shapes], keep_params_as_input=not bind_params)
        if not bind_params:
            mod, _ = relax.frontend.detach_params(mod)
        mod = FUSION_PIPELINE(block)(mod)
    except Exception as e:
        raise LowerError(f"TVM cannot lower {type(gm).__name__} at input {input_shape}: {type(e).__name__}: {str(e)[:500]}") from e
    interrupt.check()  # a Ctrl-C during TVM's import and passes can be lost inside them
    return Lowered(mod, _kernels(mod, folded), input_shape)


def _kernels(mod, gm: fx.GraphModule) -> Dict[str, Kernel]:
    param_owner = {key: name.rsplit(".", 1)[0] for name, _ in gm.named_parameters() for key in (name, name.replace(".", "_"))}
    kernels: Dict[str, Kernel] = {}
    for gv, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc):
            shapes = tuple(tuple(int(s) for s in p.ty.shape) for p in func.params)
            kind = kernel_kind(func)
            kernels[gv.name_hint] = Kernel(gv.name_hint, func, kind, shapes, signature(func, kind, shapes),
                                           dtypes=tuple(str(p.ty.dtype) for p in func.params))
    call_tir = tvm.ir.Op.get("relax.call_tir")
    # values computed from weights alone (a bias reshaped for broadcasting, packed conv weights),
    # with the modules whose weights they hold; names repeat, vars do not
    from_weights: Dict[relax.Var, Tuple[str, ...]] = {}

    def owners_of(a) -> Tuple[str, ...]:
        if isinstance(a, relax.Var) and a.name in param_owner:
            return (param_owner[a.name],)
        return from_weights.get(a, ())

    def is_weight(a) -> bool:
        return isinstance(a, tvm.ir.expr.Constant) or (isinstance(a, relax.Var) and (a.name in param_owner or a in from_weights))

    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            call = binding.value
            if not (isinstance(call, relax.Call) and call.op.same_as(call_tir)):
                continue
            k = kernels[call.args[0].name_hint]
            args = list(call.args[1].fields)
            owners = tuple(dict.fromkeys(o for a in args for o in owners_of(a)))
            weights = tuple(i for i, a in enumerate(args) if is_weight(a))
            if len(weights) == len(args):
                from_weights[binding.var] = owners
                continue  # computes on weights only: folded away when weights are bound
            k.call_modules += (owners,)
            k.weight_args = weights
    return {name: k for name, k in kernels.items() if k.calls}
