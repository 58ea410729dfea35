"""Convolutions one by one: hakd's kernel against ONNX Runtime's node, in the same model.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/conv_nodes.py [--models mobilenet_v2,mobilenet_v2_tp8] \
        [--sizes 28,32] [--kinds depthwise,dense] [--rounds 5] [--runs 50]

Needs the bench extra (onnxruntime). Per model and input size, one thread, batch 1:

- hakd: the model lowered for the host (its channel block); every conv kernel's schedules built and
  timed from an empty latency table, the fastest kept, as an export chooses it; then timed once
  more in each round (``Profiler.retime``: the lowest timing is kept, as hakd keeps it), in the
  model's cache context; and inside the exported model itself (``in_model``: a VM instrument reads
  the clock before and after every call over ``--runs`` whole-model runs per round, less what the
  instrument's own call costs; the lowest round is kept), which is what ONNX Runtime's profile
  measures;
- ONNX Runtime: the model's ONNX export, all graph optimisations (its NCHWc rewrite, Conv + Clip or
  ReLU and the residual Sum fused), one intra- and inter-op thread, profiled: each round runs the
  whole model ``--runs`` times and takes the mean of each conv node's kernel time (ONNX Runtime
  reports whole microseconds); the lowest round is kept.

Rounds alternate the two. Convs of one key (kind, channels in and out, kernel size, output size,
stride, residual add fused or not) are one row: one hakd kernel called that many times, ONNX
Runtime's nodes averaged. Channels are rounded up to hakd's channel block on both sides (both pad
a block). Writes results/conv_nodes.csv; columns: benchmarks/README.md.
"""

import argparse
import collections
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hakd.cost.profile import Profiler
from hakd.cost.table import LatencyTable
from hakd.export import META, export, export_onnx, load
from hakd.passes.trace import trace
from backends import SIZES, add_zoo_args, say_host, zoo_model  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from common import cpu, hide_avx512, host, isa, merge_rows, onnxruntime_session, write_csv  # noqa: E402

KINDS = ("depthwise", "dense")


def conv_key(kind: str, c_in: int, c_out: int, kernel: int, h_in: int, h_out: int, w_out: int, residual: bool,
             block: int) -> tuple:
    """What a row is keyed by: (kind, channels in, out (rounded up to ``block``), kernel size, output
    height, width, stride, residual add fused).

    >>> conv_key("dense", 24, 144, 1, 28, 14, 14, False, 16)
    ('dense', 32, 144, 1, 14, 14, 2, False)
    """
    up = lambda c: -(-c // block) * block  # noqa: E731
    return kind, up(c_in), up(c_out), kernel, h_out, w_out, -(-h_in // h_out), residual


def hakd_key(signature: str, block: int):
    """The conv key of a hakd conv kernel from its signature, or None for any other kernel.

    >>> hakd_key("depthwise|1x6x28x28x16;6x3x3x16;1x6x1x1x16;1x6x14x14x16|5eaa", 16)
    ('depthwise', 96, 96, 3, 14, 14, 2, False)
    >>> hakd_key("conv2d|1x4x14x14x8;36x4x4x8x8;1x4x1x1x8;1x4x14x14x8;1x4x14x14x8|ad93", 8)  # Winograd
    ('dense', 32, 32, 3, 14, 14, 1, True)
    >>> hakd_key("conv2d|1x1x28x28;2x1x3x3x8;1x2x1x1x8;1x2x28x28x8|965b", 8)  # the stem, NCHW input
    ('dense', 8, 16, 3, 28, 28, 1, False)
    """
    kind, shapes = signature.split("|")[:2]
    if kind not in ("conv2d", "depthwise"):
        return None
    x, w, *rest = [[int(d) for d in s.split("x")] for s in shapes.split(";")]
    out = rest[-1]
    channels = lambda t: t[1] * t[4] if len(t) == 5 else t[1]  # noqa: E731
    if kind == "depthwise":
        return conv_key("depthwise", channels(x), channels(out), w[1], x[2], out[2], out[3], len(rest) > 2, block)
    winograd = len(x) == 5 and len(w) == 5  # transformed weights (tiles, O/b, I/b, b, b): always a 3x3 conv
    return conv_key("dense", channels(x), channels(out), 3 if winograd else w[2], x[2], out[2], out[3],
                    len(rest) > 2, block)


def onnxruntime_convs(profile: Path, runs: int, block: int) -> dict:
    """conv key -> [mean microseconds of each round, over every node of that key], from an ONNX
    Runtime profile of ``runs`` runs per round."""
    per_node = {}
    for e in json.loads(profile.read_text()):
        args = e.get("args", {})
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") \
                or args.get("op_name") not in ("Conv", "FusedConv"):
            continue
        shapes = [next(iter(t.values())) for t in args.get("input_type_shape", [])]
        out = next(iter(args["output_type_shape"][0].values()))
        x, w = shapes[0], shapes[1]
        # a 1-channel stem's weight is [C, 1, k, k] as a depthwise conv's is
        kind = "depthwise" if w[1] == 1 and x[1] == out[1] and out[1] > 1 else "dense"
        key = conv_key(kind, x[1], out[1], w[2], x[2], out[2], out[3], len(shapes) > 3, block)
        per_node.setdefault((key, e["name"]), []).append(e["dur"])
    rounds = {}
    for (key, _), durs in per_node.items():
        means = [float(np.mean(durs[i:i + runs])) for i in range(0, len(durs), runs)]
        rounds.setdefault(key, []).append(means)
    return {key: np.mean(nodes, axis=0).tolist() for key, nodes in rounds.items()}


class InModel:
    """Seconds per call of each kernel of an exported hakd model, inside whole-model runs.

    A VM instrument reads the clock at the end of its call before each kernel and at the start of
    its call after it; what lies between beyond the kernel is the VM's call of a Python function
    with the kernel's arguments, measured here on a function that does nothing and subtracted."""

    def __init__(self, folder: Path, shape):
        import tvm
        from tvm import relax

        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(load(folder).library)), tvm.cpu(0))
        self.x = tvm.runtime.tensor(np.random.default_rng(0).standard_normal(shape).astype(np.float32))
        self.seconds, self.calls, self.args, self._t = collections.defaultdict(float), collections.Counter(), {}, 0.0
        self.vm.set_instrument(self._instrument)

    def _instrument(self, func, symbol, before, ret, *args):
        if before:
            self._t = time.perf_counter()
        else:
            self.seconds[symbol] += time.perf_counter() - self._t
            self.calls[symbol] += 1
            self.args[symbol] = len(args)
        return 0

    def run(self, runs: int) -> dict:
        """kernel name -> seconds per call over ``runs`` model runs, less the instrument's cost."""
        import tvm_ffi

        self.seconds.clear(), self.calls.clear()
        for _ in range(runs):
            self.vm["main"](self.x)
        cost = {n: call_cost(tvm_ffi, n, self.x) for n in set(self.args.values())}
        return {k: s / self.calls[k] - cost[self.args[k]] for k, s in self.seconds.items()}


def call_cost(tvm_ffi, n_args: int, tensor, times: int = 20000) -> float:
    """Seconds of a call from TVM's FFI of a Python function that does nothing with ``n_args`` tensors."""
    f, args = tvm_ffi.convert(lambda *a: 0), (tensor,) * n_args
    best = float("inf")
    for _ in range(3):
        t0 = time.perf_counter()
        for _ in range(times):
            f(*args)
        best = min(best, (time.perf_counter() - t0) / times)
    return best


def measure(model, shape, kinds, rounds: int, runs: int, folder: Path) -> list:
    """One row per conv key of ``model`` whose kind is in ``kinds``."""
    gm = trace(model, torch.zeros(shape))
    prof = Profiler(host(), table=LatencyTable(folder / "table.sqlite"))
    block = prof.channel_block
    low = prof.lower(gm)
    context = prof.context(low)
    kernels = [k for k in low.kernels.values() if (hakd_key(k.signature, block) or ("",))[0] in kinds]
    timed = {t.signature: t for t in prof.kernels([(k, None) for k in kernels], context)}
    session = onnxruntime_session(export_onnx(gm, folder / "model.onnx", torch.zeros(shape)), str(folder / "ort"))
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(runs):  # warm-up, outside the profile's rounds
        session.run(None, {"input": x})
    session.end_profiling()
    session = onnxruntime_session(folder / "model.onnx", str(folder / "ort"))  # a new profile: the rounds only
    export(gm, folder / "hakd", prof)  # every conv's schedule is in the table: the fastest of each is deployed
    name_of = {k["signature"]: k["kernel"] for k in json.loads((folder / "hakd" / META).read_text())["kernels"]}
    in_model, inside = InModel(folder / "hakd", shape), {}
    best = {k.signature: timed[k.signature].latency_s for k in kernels}
    for _ in range(rounds):
        for _ in range(runs):
            session.run(None, {"input": x})
        for k in kernels:
            best[k.signature] = prof.retime(k, timed[k.signature].schedule, context, times=rounds + 2).latency_s
        for name, s in in_model.run(runs).items():
            inside[name] = min(inside.get(name, s), s)
    ort_us = onnxruntime_convs(Path(session.end_profiling()), runs, block)
    rows = []
    for k in kernels:
        key = hakd_key(k.signature, block)
        hakd_us, theirs = best[k.signature] * 1e6, min(ort_us[key]) if key in ort_us else float("nan")
        mine = inside[name_of[k.signature]] * 1e6 if name_of.get(k.signature) in inside else float("nan")
        rows.append(dict(kind=key[0], c_in=key[1], c_out=key[2], kernel=key[3], out_hw=f"{key[4]}x{key[5]}",
                         stride=key[6], residual=int(key[7]), convs=k.calls, hakd_us=f"{hakd_us:.2f}",
                         onnxruntime_us=f"{theirs:.2f}", hakd_over_onnxruntime=f"{hakd_us / theirs:.3f}",
                         hakd_in_model_us=f"{mine:.2f}", in_model_over_onnxruntime=f"{mine / theirs:.3f}",
                         schedule=timed[k.signature].schedule))
    return sorted(rows, key=lambda r: (r["kind"], -int(r["out_hw"].split("x")[0]), r["c_in"], r["c_out"]))


def run():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_zoo_args(ap, "mobilenet_v2,mobilenet_v2_tp8", "28,32", 5)
    ap.add_argument("--kinds", default=",".join(KINDS), help="depthwise, dense (1x1, 3x3 direct or Winograd, stems)")
    ap.add_argument("--runs", type=int, default=50, help="whole-model runs of ONNX Runtime per round")
    args = ap.parse_args()
    kinds = args.kinds.split(",")
    if not set(kinds) <= set(KINDS):
        ap.error(f"--kinds: {args.kinds!r}; choose from {', '.join(KINDS)}")
    hide_avx512(args.hide_avx512)
    say_host()
    rows = []
    for name in args.models.split(","):
        for size in args.sizes.split(","):
            shape = SIZES[size]
            model = zoo_model(name, shape)
            with tempfile.TemporaryDirectory() as d:
                for row in measure(model, shape, kinds, args.rounds, args.runs, Path(d)):
                    rows.append(dict(model=name, size=size, cpu=cpu(), isa=isa(), **row, rounds=args.rounds))
                    print(rows[-1], flush=True)
    write_csv("conv_nodes.csv", merge_rows("conv_nodes.csv", rows, ("model", "size", "cpu", "isa", "kind")))


if __name__ == "__main__":
    run()
