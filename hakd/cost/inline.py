"""Prepare a traced model for TVM's fx importer: the layers hakd keeps whole, inlined.

hakd's tracer keeps a subclass of Conv2d or Linear whole (a "same padding" conv whose
forward calls ``F.conv2d`` on its own weight is a layer to prune), and stochastic depth too.
TVM's importer maps a module call by its exact type, so for inference each such call (and
any module it does not map, such as ``nn.Upsample``) is replaced by what its forward
computes in eval mode, traced at the input shape the call
receives: a forward that reads its input's size (dynamic same padding) is specialised to
it. Stochastic depth, identity in eval mode, is removed, and nearest upsampling becomes an
exact repeat::

    gm = inline_for_import(fold_batchnorm(gm))
"""

from __future__ import annotations

import functools

import torch
import torch.nn.functional as F
from torch import fx, nn

from hakd.errors import HakdError
from hakd.layer_types import functional_args, is_drop_path

__all__ = ["inline_for_import", "InlineError"]


class InlineError(HakdError):
    """A module TVM cannot import as it is could not be traced into either."""


class _SizedProxy(fx.Proxy):
    """The traced forward's input: a proxy whose size is the concrete size the call receives."""

    def __init__(self, node, tracer, size: torch.Size):
        super().__init__(node, tracer)
        self._size = size

    def size(self, dim=None):
        return self._size if dim is None else self._size[dim]

    @property
    def shape(self):
        return self._size

    def dim(self):
        return len(self._size)

    @property
    def ndim(self):
        return len(self._size)


class _AtShape(fx.Tracer):
    """Traces one module's forward (modules TVM imports stay leaves) with its input's and
    parameters' sizes known."""

    def __init__(self, size: torch.Size):
        super().__init__()
        self.input_size = size

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return _importable(m)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        value = super().getattr(attr, attr_val, parameter_proxy_cache)
        if isinstance(value, fx.Proxy) and isinstance(attr_val, torch.Tensor):  # a weight's shape is known too
            return _SizedProxy(value.node, self, attr_val.shape)
        return value

    def proxy(self, node):
        if node.op == "placeholder" and self.input_size is not None:
            size, self.input_size = self.input_size, None
            return _SizedProxy(node, self, size)
        return super().proxy(node)


@functools.lru_cache(maxsize=1)
def _importer_types() -> frozenset:
    from tvm.relax.frontend.torch.fx_translator import TorchFXImporter

    return frozenset(k for k in TorchFXImporter().create_convert_map() if isinstance(k, type))


def _importable(m: nn.Module) -> bool:
    """A module TVM's importer maps as it is (by exact type); others (a Conv2d subclass,
    nn.Upsample) are inlined into the functions their forward calls."""
    return type(m) in _importer_types()


def _drop_path(node: fx.Node, gm: fx.GraphModule) -> bool:
    if node.op == "call_module":
        return is_drop_path(gm.get_submodule(node.target))
    return node.op == "call_function" and is_drop_path(node.target)


def inline_for_import(gm: fx.GraphModule) -> fx.GraphModule:
    """``gm`` (changed in place and returned) with every module call TVM cannot import
    replaced by its forward's graph, and stochastic depth removed."""
    changed = False
    while True:  # an inlined forward may call modules that need inlining in turn
        node = next((n for n in gm.graph.nodes if n.op in ("call_module", "call_function") and (
            _drop_path(n, gm) or n.op == "call_module" and not _importable(gm.get_submodule(n.target)))), None)
        if node is None:
            break
        changed = True
        if _drop_path(node, gm):
            node.replace_all_uses_with(node.args[0])
            gm.graph.erase_node(node)
        else:
            _inline(gm, node)
    if changed:
        gm.graph.eliminate_dead_code()
        gm.recompile()
    if any(n.op == "call_function" and n.target is F.interpolate for n in gm.graph.nodes):
        _shapes(gm)
        if _nearest_upsampling_as_repeat(gm):
            gm.recompile()
    if _positional_functional_layers(gm):
        gm.recompile()
    return gm


def _positional_functional_layers(gm: fx.GraphModule) -> bool:
    """``F.conv2d`` / ``F.linear`` calls with every argument positional: TVM 0.27's importer reads
    them by position only (a ``padding=1`` keyword is silently dropped)."""
    changed = False
    for n in gm.graph.nodes:
        args = functional_args(n)
        if args and n.kwargs:
            n.args, n.kwargs = tuple(args.values()), {}
            changed = True
    return changed


def _shapes(gm: fx.GraphModule) -> None:
    """Every node's ``tensor_meta`` again (inlined nodes have none), from the traced input shape."""
    from torch.fx.passes.shape_prop import ShapeProp

    inputs = [torch.zeros(n.meta["tensor_meta"].shape, dtype=n.meta["tensor_meta"].dtype) for n in gm.graph.nodes if n.op == "placeholder"]
    with torch.no_grad():
        ShapeProp(gm).propagate(*inputs)


def _nearest_upsampling_as_repeat(gm: fx.GraphModule) -> bool:
    """Nearest upsampling by whole factors as reshape + expand + reshape: exact, where TVM 0.27
    imports ``F.interpolate(mode="nearest")`` with other rounding than PyTorch (errors ~1e-2)."""
    changed = False
    for node in list(gm.graph.nodes):
        if not (node.op == "call_function" and node.target is F.interpolate):
            continue
        arg = lambda i, key, default=None: node.kwargs.get(key, node.args[i] if len(node.args) > i else default)  # noqa: E731
        meta, out = node.args[0].meta.get("tensor_meta"), node.meta.get("tensor_meta")
        if arg(3, "mode", "nearest") != "nearest" or meta is None or out is None or len(meta.shape) != 4:
            continue
        (n, c, h, w), (oh, ow) = meta.shape, out.shape[2:]
        if oh % h or ow % w:
            continue
        with gm.graph.inserting_before(node):
            x = gm.graph.call_method("reshape", (node.args[0], n, c, h, 1, w, 1))
            x = gm.graph.call_method("expand", (x, n, c, h, oh // h, w, ow // w))
            x = gm.graph.call_method("reshape", (x, n, c, oh, ow))
        node.replace_all_uses_with(x)
        gm.graph.erase_node(node)
        changed = True
    return changed


def _inline(gm: fx.GraphModule, node: fx.Node) -> None:
    module = gm.get_submodule(node.target)
    source = node.args[0] if node.args and isinstance(node.args[0], fx.Node) else None
    if source is not None and "tensor_meta" not in source.meta:  # made by an earlier inlining
        gm.recompile()
        _shapes(gm)
    meta = source.meta.get("tensor_meta") if source is not None else None
    was_training = module.training
    module.eval()
    try:
        sub = _AtShape(meta.shape if meta is not None else None).trace(module)
    except Exception as e:
        raise InlineError(
            f"TVM cannot import module {node.target!r} ({type(module).__name__}) and its forward cannot be traced into: "
            f"{type(e).__name__}: {str(e)[:200]}. Replace it by torch.nn modules, or trace with trace_into=[{type(module).__name__}] "
            "to see which call fails") from e
    finally:
        module.train(was_training)
    env, inputs = {}, list(node.args)
    with gm.graph.inserting_before(node):
        for sn in sub.nodes:
            if sn.op == "placeholder":
                env[sn] = inputs.pop(0) if inputs else (sn.args[0] if sn.args else None)
            elif sn.op == "output":
                result = fx.node.map_arg(sn.args[0], lambda a: env[a])
            elif sn.op in ("get_attr", "call_module"):
                args = fx.node.map_arg(sn.args, lambda a: env[a])
                kwargs = fx.node.map_arg(sn.kwargs, lambda a: env[a])
                env[sn] = gm.graph.create_node(sn.op, f"{node.target}.{sn.target}", args, kwargs)
            else:
                env[sn] = gm.graph.node_copy(sn, lambda a: env[a])
    node.replace_all_uses_with(result)
    gm.graph.erase_node(node)
