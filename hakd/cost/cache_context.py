"""The cache state a kernel is timed in, and the timer that sets it up before every call.

A kernel called in a loop finds its weights and output in cache; inside a model it does
not: between two inferences the rest of the model streams its own weights and activations
through the caches. The *cache context* of a timing says which case is measured:

- ``"warm"``: repeated calls, back to back;
- ``"cold"``: every operand but the first input flushed to memory before each call;
- ``"reuse-<N>MiB"``: N MiB of other data read before each call, then the kernel's hot
  arguments touched again (the inputs earlier kernels just wrote, the output buffer the
  memory plan hands on): a kernel's *first* call in a model whose inference touches N MiB,
  its weights last used an inference ago;
- ``"reuse-<N>MiB+repeat"``: the same, then the kernel called once on other arguments (other
  weights, other activations) before the hot ones are touched: a *later* call of a kernel the
  model calls again soon after (ResNet-56 alternates two kernels per stage, 9 calls each).
  Its code (instruction and micro-op caches, branch predictors) and the vector units are warm.

Each context is a separate table row.

>>> cache_context("model", 5 * 2**20), repeat_context("reuse-8MiB"), repeat_context("cold")
('reuse-8MiB', 'reuse-8MiB+repeat', None)
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import tvm

__all__ = ["CACHE_MODES", "cache_context", "repeat_context", "timer"]

CACHE_MODES = ("model", "warm", "cold")
REPEAT = "+repeat"


def cache_context(mode: str, footprint_bytes: int, evict_here: bool = True) -> str:
    """The cache context kernels of a model touching ``footprint_bytes`` per inference are
    timed in. Footprints are rounded up to a power of two MiB, so models of similar size
    share table rows; where hakd cannot run code beside the kernel (an RPC board), the
    model context is ``"cold"``, the limit of a footprint larger than the board's caches.

    >>> cache_context("model", 5 * 2**20), cache_context("model", 100), cache_context("model", 10**7, evict_here=False)
    ('reuse-8MiB', 'reuse-1MiB', 'cold')
    """
    if mode != "model":
        return mode
    if not evict_here:
        return "cold"
    mib = 1
    while mib * 2**20 < footprint_bytes:
        mib *= 2
    return f"reuse-{mib}MiB"


def repeat_context(context: str) -> Optional[str]:
    """The context of a kernel's later calls in an inference whose first calls are timed in
    ``context``: only a reuse context has one (elsewhere every call is timed as the first)."""
    return context + REPEAT if context.startswith("reuse-") and not context.endswith(REPEAT) else None


_EVICTION = {"buffer": np.zeros(0, dtype=np.float32), "hot": (0,), "again": None}


@tvm.register_global_func("hakd.evict_caches", override=True)
def _evict_caches(*args):
    """time_evaluator's pre-call hook in a reuse context: stream the eviction buffer, call the
    kernel once on other arguments (a repeat context), then touch the kernel's hot arguments."""
    try:
        _EVICTION["buffer"].sum()
        if _EVICTION["again"] is not None:
            function, other = _EVICTION["again"]
            function(*other)
        for i in _EVICTION["hot"]:
            np.from_dlpack(args[i]).sum()  # read in place: a copy would evict as much as it touches
    except KeyboardInterrupt:  # Ctrl-C here reaches the timer's caller as a TVM error: LocalRunner.time says what it was
        _EVICTION["interrupted"] = True
        raise


def release() -> bool:
    """After a timing: drop the repeat call's kernel and arguments; True when Ctrl-C stopped the
    timing inside the hook (not the kernel)."""
    _EVICTION["again"] = None
    return _EVICTION.pop("interrupted", False)


def timer(mod, entry: str, dev, config, context: str, hot: Sequence[int] = (0,), other: Sequence = ()):
    """``mod.time_evaluator`` for ``entry`` in cache ``context`` (``config``: a MeasureConfig).
    ``other``: the arguments of the extra call a repeat context makes before each timed one."""
    if context == "warm":
        return mod.time_evaluator(entry, dev, number=config.number, repeat=config.repeat, min_repeat_ms=config.min_repeat_ms)
    base = context[:-len(REPEAT)] if context.endswith(REPEAT) else context
    if context == "cold":
        preproc = "cache_flush_cpu_non_first_arg"
    elif base.startswith("reuse-") and base.endswith("MiB") and base[len("reuse-"):-len("MiB")].isdigit():
        size = int(base[len("reuse-"):-len("MiB")]) * 2**20 // 4
        if _EVICTION["buffer"].size != size:
            _EVICTION["buffer"] = np.ones(size, dtype=np.float32)
        _EVICTION["hot"] = tuple(hot)
        if base != context and not other:
            raise ValueError(f"context {context!r} needs the arguments of the call before the timed one")
        _EVICTION["again"] = (mod[entry], tuple(other)) if base != context else None
        preproc = "hakd.evict_caches"
    else:
        raise ValueError(f"unknown cache context {context!r}")
    return mod.time_evaluator(entry, dev, number=1, repeat=config.cold_repeat, f_preproc=preproc)
