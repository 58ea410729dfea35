"""hakd's exported model against what a user would deploy instead, on the same model and input.

    TVM_NUM_THREADS=1 .venv/bin/python benchmarks/backends.py [--models resnet20,...] [--rounds 7]

Needs the bench extra (`pip install -e .[bench]`: onnxruntime). Per model and input size, in
interleaved rounds (every backend once per round, in a rotating order), one thread, batch 1,
numpy in and numpy out for every backend:

- hakd: the folder `hakd.export` writes (hakd's schedules, weights embedded), called as a user
  calls it (`hakd.export.load(folder)(x)`), activations in the target's blocked layout NCHW{b}c;
- hakd_nchw: the same, with activations in plain NCHW between kernels (hakd before the blocked layout);
- ONNX Runtime: `hakd.export.export_onnx`, all graph optimisations, one intra- and inter-op thread;
- TorchScript frozen: `torch.jit.freeze` + `torch.jit.optimize_for_inference`;
- torch.compile (inductor, default mode) and PyTorch eager.

Writes results/backends.csv (one row per model, size and backend: median latency, the median of
the per-round ratios backend / hakd, their range) and results/backends_kernels.csv (hakd's largest
convolutions: GFLOP/s from the exported model's kernel latencies, against PyTorch's sgemm on the
same thread count, measured in the same run). Columns: benchmarks/README.md.
"""

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from hakd.cost.profile import Profiler
from hakd.cost.table import LatencyTable
from hakd.export import META, export, export_onnx, load
from hakd.passes.trace import trace
from common import (add_hide_avx512_arg, calibrated, cpu, hide_avx512, host, isa, merge_rows, onnxruntime_session,
                    write_csv)

SIZES = {"32": (1, 3, 32, 32), "28": (1, 1, 28, 28)}


def backends(model, gm, shape, folder: Path):
    """name -> callable(numpy) -> numpy, every one built from the same calibrated model."""
    x = torch.zeros(shape)
    table = LatencyTable(folder / "table.sqlite")  # a new table: every kernel timed in this run, not read from a cache
    export(gm, folder / "hakd", Profiler(host(), table=table))
    export(gm, folder / "hakd_nchw", Profiler(host(), channel_block=0, table=table))
    hakd_model, hakd_nchw = load(folder / "hakd"), load(folder / "hakd_nchw")
    session = onnxruntime_session(export_onnx(gm, folder / "model.onnx", x))
    with torch.no_grad():
        frozen = torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.trace(model, x).eval()))
        compiled = torch.compile(model)
        for _ in range(3):  # compile and warm the JIT'ed ones before any timing
            frozen(x), compiled(x)

    def torch_call(fn):
        def call(a):
            with torch.no_grad():
                return fn(torch.from_numpy(a)).numpy()
        return call

    return {"hakd": hakd_model, "hakd_nchw": hakd_nchw, "onnxruntime": lambda a: session.run(None, {"input": a})[0],
            "torchscript_frozen": torch_call(frozen), "torch_compile": torch_call(compiled), "pytorch_eager": torch_call(model)}


WRONG = 1e-3  # a backend whose outputs are further than this from PyTorch eager's is not timed


def time_call(fn, x, seconds=0.3):
    """Median seconds per call over 5 batches of calls lasting about ``seconds`` in all."""
    fn(x)
    t0 = time.perf_counter()
    fn(x)
    number = max(1, int(seconds / 5 / max(time.perf_counter() - t0, 1e-6)))
    runs = []
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(number):
            fn(x)
        runs.append((time.perf_counter() - t0) / number)
    return statistics.median(runs)


def sgemm_gflops(n=512, seconds=0.5):
    a, b = torch.randn(n, n), torch.randn(n, n)
    return 2 * n ** 3 / time_call(lambda _: torch.mm(a, b), None, seconds) / 1e9


def macs_per_output(kind: str, weight, winograd: bool = False) -> int:
    """Multiply-adds per output value of a conv of ``kind`` with this (packed) weight shape:
    OIHW and (O/16)IHW16o (NCHW), (O/b)(I/b)HWb(b) and (O/b)IHWb (blocked; padded channels
    counted), C1HW (NCHW depthwise) and (C/b)HWb (blocked depthwise). A Winograd conv's weights,
    ((m+2)^2)(O/b)(I/b)bb, count as the direct 3x3 conv's (9 per input channel): its GFLOP/s is the
    rate a direct conv would need to match it, as Winograd's speed is usually stated."""
    if winograd:
        return 9 * int(weight[2] * weight[3])
    if len(weight) == 6:
        return int(np.prod(weight[1:5]))
    if kind == "depthwise" and len(weight) == 4 and weight[1] != 1:  # blocked depthwise
        return int(weight[1] * weight[2])
    return int(np.prod(weight[1:4]))


def torch_pruning_r8(name: str, shape):
    """Torch-Pruning's student of the calibrated zoo model at ratio 0.5, widths rounded to 8."""
    sys.path.insert(0, str(Path(__file__).parent))
    from peers import torch_pruning_student

    return torch_pruning_student(calibrated(name, shape), shape, 0.5, round_to=8).eval()


def zoo_model(name: str, shape):
    """The calibrated zoo model ``name``, or (``NAME_tp8``) Torch-Pruning's round-to-8 student of it."""
    return torch_pruning_r8(name[:-4], shape) if name.endswith("_tp8") else calibrated(name, shape)


def add_zoo_args(ap, models: str, sizes: str, rounds: int) -> None:
    """--models, --sizes, --rounds (with these defaults) and --hide-avx512."""
    ap.add_argument("--models", default=models,
                    help="zoo models; NAME_tp8: Torch-Pruning's student of NAME at ratio 0.5, round_to=8")
    ap.add_argument("--sizes", default=sizes, help="input sizes: 32 (3x32x32), 28 (1x28x28)")
    ap.add_argument("--rounds", type=int, default=rounds)
    add_hide_avx512_arg(ap)


def say_host() -> None:
    """Print the host's machine, vector ISA, hakd's target and channel block, and use one torch thread."""
    torch.set_num_threads(1)
    prof = Profiler(host())
    print(f"host {platform.machine()} {cpu()}, vector ISA {isa()}, hakd's target '{prof.target.key()}' with channel "
          f"block {prof.channel_block}, torch's CPU capability {torch.backends.cpu.get_cpu_capability()}", flush=True)


def conv_gflops(folder: Path, top=3):
    """hakd's ``top`` slowest conv kernels of an export: (name, shapes, GFLOP/s) from its kernel latencies."""
    meta = json.loads((folder / META).read_text())
    rows = []
    for k in meta["kernels"]:
        if not k["signature"].startswith(("conv2d|", "depthwise|", "grouped|")):
            continue
        shapes = [tuple(int(d) for d in s.split("x")) for s in k["signature"].split("|")[1].split(";")]
        weight, out = shapes[1], shapes[-1]
        flops = 2 * int(np.prod(out)) * macs_per_output(k["signature"].split("|")[0], weight, "winograd" in k["kernel"])
        rows.append((k["latency_s"] * k["calls"], k["kernel"], f"{weight}->{out}", flops / k["latency_s"] / 1e9, k["schedule"]))
    return sorted(rows, reverse=True)[:top]


def run():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_zoo_args(ap, "resnet20,resnet56,mobilenet_v2,densenet40,resnet56_tp8,mobilenet_v2_tp8", "32,28", 7)
    args = ap.parse_args()
    hide_avx512(args.hide_avx512)
    say_host()
    rows, kernel_rows = [], []
    peak = []
    for name in args.models.split(","):
        for size in args.sizes.split(","):
            shape = SIZES[size]
            model = zoo_model(name, shape)
            gm = trace(model, torch.zeros(shape))
            with tempfile.TemporaryDirectory() as d:
                calls = backends(model, gm, shape, Path(d))
                x = np.random.default_rng(0).standard_normal(shape).astype(np.float32)
                ref = calls["pytorch_eager"](x)
                error = {b: float(np.abs(fn(x) - ref).max()) for b, fn in calls.items()}
                wrong = [b for b, e in error.items() if not e <= WRONG]  # nan too
                if "hakd" in wrong:
                    raise SystemExit(f"{name} at {size}: hakd's outputs differ from PyTorch's by {error['hakd']:.1e}")
                for b in wrong:  # e.g. torch.compile with AVX-512 hidden: its code computes something else
                    print(f"{name} at {size}: {b}'s outputs differ from PyTorch's by {error[b]:.1e}: not timed", file=sys.stderr)
                    del calls[b]
                times = {b: [] for b in calls}
                order = list(calls)
                for r in range(args.rounds):
                    peak.append(sgemm_gflops())
                    for b in order[r % len(order):] + order[:r % len(order)]:
                        times[b].append(time_call(calls[b], x))
                for k in conv_gflops(Path(d) / "hakd"):
                    kernel_rows.append(dict(model=name, size=size, cpu=cpu(), isa=isa(), kernel=k[1], weight_to_output=k[2], gflops=f"{k[3]:.1f}",
                                            schedule=k[4], share_of_model=f"{k[0] / statistics.median(times['hakd']):.3f}"))
            for b, ts in times.items():
                ratios = [t / h for t, h in zip(ts, times["hakd"])]
                rows.append(dict(model=name, size=size, cpu=cpu(), isa=isa(), backend=b, median_us=f"{statistics.median(ts) * 1e6:.1f}",
                                 over_hakd_median=f"{statistics.median(ratios):.3f}",
                                 over_hakd_range=f"{min(ratios):.3f}-{max(ratios):.3f}", max_abs_error=f"{error[b]:.1e}",
                                 rounds=args.rounds))
                print(rows[-1], flush=True)
            rows += [dict(model=name, size=size, cpu=cpu(), isa=isa(), backend=b, median_us="", over_hakd_median="",
                          over_hakd_range="wrong outputs", max_abs_error=f"{error[b]:.1e}", rounds=0) for b in wrong]
    sgemm = statistics.median(peak)
    for k in kernel_rows:
        k["share_of_sgemm"] = f"{float(k['gflops']) / sgemm:.2f}"
        k["sgemm_gflops"] = f"{sgemm:.1f}"
    write_csv("backends.csv", merge_rows("backends.csv", rows, ("model", "size", "cpu", "isa")))
    write_csv("backends_kernels.csv", merge_rows("backends_kernels.csv", kernel_rows, ("model", "size", "cpu", "isa")))
    print(f"host {platform.machine()} {Profiler(host()).target.key()} sgemm {sgemm:.1f} GFLOP/s", file=sys.stderr)


if __name__ == "__main__":
    run()
