"""The cost of one kernel call in the deployed runtime, besides the kernel itself.

A compiled model runs on TVM's Relax VM: every kernel call is a VM instruction, an
output allocation from the memory plan and a packed-function call. This module
measures that cost on the target once, with a chain of ``CHAIN`` calls of a kernel
that does almost nothing; :class:`hakd.cost.profile.ModelTiming` adds it per call.

>>> mod = dispatch_chain(4)
>>> sum(1 for b in mod["main"].body.blocks for _ in b.bindings)
5
"""

from __future__ import annotations

import tvm
from tvm import relax, te

__all__ = ["dispatch_chain", "build_chain", "CHAIN", "SHAPE", "SIGNATURE"]

CHAIN = 64
SHAPE = (1, 16, 8, 8)
SIGNATURE = f"vm-dispatch|{CHAIN}x{'x'.join(map(str, SHAPE))}"


def dispatch_chain(calls: int = CHAIN) -> tvm.IRModule:
    """``main(x)``: ``calls`` opaque (unfusable) calls of ``x + 1``, each into a new tensor."""
    a = te.placeholder(SHAPE, name="a")
    b = te.compute(SHAPE, lambda *i: a(*i) + 1.0, name="b")
    tiny = te.create_prim_func([a, b]).with_attr("op_pattern", 8).with_attr("global_symbol", "tiny")
    bb = relax.BlockBuilder()
    gv = bb.add_func(tiny, "tiny")
    x = relax.Var("x", relax.TensorType(SHAPE, "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            y = x
            for _ in range(calls):
                y = bb.emit(relax.call_tir(gv, [y], relax.TensorType(SHAPE, "float32")))
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def build_chain(target: tvm.target.Target):
    """The chain compiled for ``target`` as a Relax executable (input ``SHAPE``)."""
    with tvm.transform.PassContext(opt_level=3):
        return relax.build(dispatch_chain(), target=target)
