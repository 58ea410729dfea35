"""Depthwise convolutions one by one: hakd's kernel against ONNX Runtime's, in the same model.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/depthwise.py [--models mobilenet_v2,mobilenet_v2_tp8] \
        [--sizes 28,32] [--rounds 5] [--runs 50]

Needs the bench extra (onnxruntime). Per model and input size, one thread, batch 1:

- hakd: the model lowered for the host (its channel block); every depthwise kernel's schedules
  built and timed from an empty latency table, the fastest kept, as an export chooses it; then timed
  once more in each round (``Profiler.retime``: the lowest timing is kept, as hakd keeps it), in
  the model's cache context;
- ONNX Runtime: the model's ONNX export, all graph optimisations (its NCHWc rewrite, Conv + Clip
  fused), one intra- and inter-op thread, profiled: each round runs the whole model ``--runs``
  times and takes the mean of each depthwise node's kernel time (ONNX Runtime reports whole
  microseconds); the lowest round is kept.

Rounds alternate the two. Convs of equal shape (channels, output size, stride) are one row: one hakd
kernel called that many times, ONNX Runtime's nodes averaged. Writes results/depthwise.csv; columns:
benchmarks/README.md.
"""

import argparse
import json
import tempfile
from pathlib import Path

import numpy as np
import torch

from hakd.cost.profile import Profiler
from hakd.cost.table import LatencyTable
from hakd.export import export_onnx
from hakd.passes.trace import trace
from backends import SIZES, add_zoo_args, say_host, zoo_model  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from common import cpu, hide_avx512, host, isa, merge_rows, write_csv  # noqa: E402


def conv_key(channels: int, h_in: int, h_out: int, w_out: int) -> tuple:
    """(channels, output height, output width, stride): what a depthwise conv row is keyed by.

    >>> conv_key(96, 28, 14, 14), conv_key(576, 7, 4, 4)
    ((96, 14, 14, 2), (576, 4, 4, 2))
    """
    return channels, h_out, w_out, -(-h_in // h_out)


def hakd_key(signature: str) -> tuple:
    """The conv key of a hakd depthwise kernel from its signature (blocked or NCHW activations).

    >>> hakd_key("depthwise|1x6x28x28x16;6x3x3x16;1x6x1x1x16;1x6x14x14x16|5eaa")
    (96, 14, 14, 2)
    """
    shapes = [[int(d) for d in s.split("x")] for s in signature.split("|")[1].split(";")]
    x, out = shapes[0], shapes[-1]
    channels = out[1] * out[4] if len(out) == 5 else out[1]
    return conv_key(channels, x[2], out[2], out[3])


def onnxruntime_depthwise(profile: Path, runs: int) -> dict:
    """conv key -> [mean microseconds of each round, over every node of that shape], from an ONNX
    Runtime profile of ``runs`` runs per round."""
    per_node = {}
    for e in json.loads(profile.read_text()):
        args = e.get("args", {})
        if e.get("cat") != "Node" or not e["name"].endswith("_kernel_time") or args.get("op_name") != "Conv":
            continue
        shapes = [next(iter(t.values())) for t in args.get("input_type_shape", [])]
        out = next(iter(args["output_type_shape"][0].values()))
        x, w = shapes[0], shapes[1]
        if w[1] != 1 or x[1] != out[1] or out[1] == 1:  # not depthwise (a 1-channel stem's weight is [C, 1, k, k] too)
            continue
        per_node.setdefault((conv_key(out[1], x[2], out[2], out[3]), e["name"]), []).append(e["dur"])
    rounds = {}
    for (key, _), durs in per_node.items():
        means = [float(np.mean(durs[i:i + runs])) for i in range(0, len(durs), runs)]
        rounds.setdefault(key, []).append(means)
    return {key: np.mean(nodes, axis=0).tolist() for key, nodes in rounds.items()}


def measure(model, shape, rounds: int, runs: int, folder: Path) -> list:
    """One row per depthwise conv shape of ``model``."""
    import onnxruntime as ort

    gm = trace(model, torch.zeros(shape))
    prof = Profiler(host(), table=LatencyTable(folder / "table.sqlite"))
    low = prof.lower(gm)
    context = prof.context(low)
    kernels = [k for k in low.kernels.values() if k.signature.startswith("depthwise|")]
    timed = {t.signature: t for t in prof.kernels([(k, None) for k in kernels], context)}
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.enable_profiling, opts.profile_file_prefix = True, str(folder / "ort")
    session = ort.InferenceSession(str(export_onnx(gm, folder / "model.onnx", torch.zeros(shape))), opts,
                                   providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
    for _ in range(runs):  # warm-up, outside the profile's rounds
        session.run(None, {"input": x})
    session.end_profiling()
    session = ort.InferenceSession(str(folder / "model.onnx"), opts, providers=["CPUExecutionProvider"])
    best = {k.signature: timed[k.signature].latency_s for k in kernels}
    for _ in range(rounds):
        for _ in range(runs):
            session.run(None, {"input": x})
        for k in kernels:
            best[k.signature] = prof.retime(k, timed[k.signature].schedule, context, times=rounds + 2).latency_s
    ort_us = onnxruntime_depthwise(Path(session.end_profiling()), runs)
    rows = []
    for k in kernels:
        key = hakd_key(k.signature)
        hakd_us, theirs = best[k.signature] * 1e6, min(ort_us[key]) if key in ort_us else float("nan")
        rows.append(dict(channels=key[0], out_hw=f"{key[1]}x{key[2]}", stride=key[3], convs=k.calls,
                         hakd_us=f"{hakd_us:.2f}", onnxruntime_us=f"{theirs:.2f}",
                         hakd_over_onnxruntime=f"{hakd_us / theirs:.3f}", schedule=timed[k.signature].schedule))
    return sorted(rows, key=lambda r: (-int(r["out_hw"].split("x")[0]), r["channels"]))


def run():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_zoo_args(ap, "mobilenet_v2,mobilenet_v2_tp8", "28,32", 5)
    ap.add_argument("--runs", type=int, default=50, help="whole-model runs of ONNX Runtime per round")
    args = ap.parse_args()
    hide_avx512(args.hide_avx512)
    say_host()
    rows = []
    for name in args.models.split(","):
        for size in args.sizes.split(","):
            shape = SIZES[size]
            model = zoo_model(name, shape)
            with tempfile.TemporaryDirectory() as d:
                for row in measure(model, shape, args.rounds, args.runs, Path(d)):
                    rows.append(dict(model=name, size=size, cpu=cpu(), isa=isa(), **row, rounds=args.rounds))
                    print(rows[-1], flush=True)
    write_csv("depthwise.csv", merge_rows("depthwise.csv", rows, ("model", "size", "cpu", "isa")))


if __name__ == "__main__":
    run()
