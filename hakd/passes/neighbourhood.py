"""The part of a traced model around some of its modules, as a model of its own.

A group's staircase times only the fused kernels that read the weights of its layers.
Lowering the whole model at every width to find them is most of a sweep on a deep model;
the same kernels come out of a small model made of the layers near the group, whose inputs
are the activations it reads from the rest of the model (their shapes from ``tensor_meta``)::

    >>> import torch
    >>> from hakd.models import resnet20
    >>> from hakd.passes.trace import trace
    >>> gm = trace(resnet20(), torch.zeros(1, 3, 32, 32))
    >>> part = neighbourhood(gm, {"layers.0.conv1"}, hops=1)
    >>> [n.op + ":" + str(n.target) for n in part.graph.nodes]
    ['placeholder:bn1', 'call_module:relu', 'call_module:layers.0.conv1', 'call_module:layers.0.bn1', 'output:output']
    >>> [tuple(n.meta["tensor_meta"].shape) for n in part.graph.nodes if n.op == "placeholder"]
    [(1, 16, 32, 32)]
"""

from __future__ import annotations

from typing import Iterable, List, Optional, Set

from torch import fx
from torch.fx.passes.shape_prop import TensorMetadata

__all__ = ["neighbourhood"]


def _centre(node: fx.Node, modules: Set[str]) -> bool:
    """A call of one of ``modules``, or a functional layer on their parameters."""
    if node.op == "call_module":
        return node.target in modules
    return node.op == "call_function" and any(
        a.op == "get_attr" and a.target.rpartition(".")[0] in modules for a in node.all_input_nodes)


def neighbourhood(gm: fx.GraphModule, modules: Iterable[str], hops: int = 4) -> Optional[fx.GraphModule]:
    """The nodes of ``gm`` within ``hops`` edges of the calls of ``modules`` (and the
    parameters and buffers they read), as a GraphModule sharing ``gm``'s submodules. Values
    it reads from outside become placeholders carrying their ``meta`` (``tensor_meta``, labels); values read
    outside it are its outputs. None when one of its inputs is not a tensor with a known
    shape (the caller then uses the whole model)."""
    modules = set(modules)
    nodes = list(gm.graph.nodes)
    near = {n for n in nodes if _centre(n, modules)}
    if not near:
        return None
    frontier = set(near)
    for _ in range(hops):
        step = {a for n in frontier for a in n.all_input_nodes} | {u for n in frontier for u in n.users}
        frontier = {n for n in step if n.op not in ("placeholder", "get_attr", "output")} - near
        near |= frontier
    graph, env = fx.Graph(), {}
    inputs: List[fx.Node] = [a for a in dict.fromkeys(a for n in nodes if n in near for a in n.all_input_nodes)
                             if a not in near and a.op != "get_attr"]
    for a in inputs:
        meta = a.meta.get("tensor_meta")
        if not isinstance(meta, TensorMetadata):
            return None
        env[a] = graph.placeholder(a.name)
        env[a].meta.update(a.meta)  # its shape, and its channel labels (hakd.passes.rebuild.rebuild_part)
    for n in nodes:
        if n not in near:
            continue
        for a in n.all_input_nodes:
            if a.op == "get_attr" and a not in env:
                env[a] = graph.get_attr(a.target)
        env[n] = graph.node_copy(n, lambda a: env[a])
    outputs = [env[n] for n in nodes if n in near and any(u not in near for u in n.users)]
    graph.output(outputs[0] if len(outputs) == 1 else tuple(outputs))
    return fx.GraphModule(gm, graph)
