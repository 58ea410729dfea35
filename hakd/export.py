"""Export a model compiled with exactly the schedules hakd measured, checked against PyTorch.

The artefact is a folder: ``model.so`` (or ``model.tar`` when no cross compiler for the
target is installed) with the Relax VM executable and embedded weights, and
``hakd-export.json`` (target, input shape, every kernel's schedule and latency, the
predicted latency, the error against PyTorch)::

    result = export(gm, "out/r20", Profiler("host"))
    model = load("out/r20")
    y = model(x_numpy)
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from pathlib import Path
from typing import Optional

import numpy as np
import torch
from torch import fx

from hakd.checkpoint import atomic_write_text
from hakd.cost.deploy import DeployError, VmModel, compile_scheduled, write_library

__all__ = ["export", "export_onnx", "load", "ExportResult", "META", "OnnxRuntimeModel"]

META = "hakd-export.json"


@dataclasses.dataclass
class ExportResult:
    folder: Path
    library: Path
    predicted_latency_s: float
    max_abs_error: Optional[float]  # against PyTorch, when the target runs on this host


def export(gm: fx.GraphModule, folder, profiler, input_shape=None, check_inputs: int = 2) -> ExportResult:
    """Compile ``gm`` for ``profiler``'s target with its measured schedules and write the artefact."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    executable, timing, input_shape = compile_scheduled(gm, profiler, input_shape)
    library = write_library(executable, folder, profiler.target)
    error = None
    if profiler.target.runs_here():
        compiled = VmModel(library, input_shape)
        gen = torch.Generator().manual_seed(0)
        reference = gm.eval()
        error = 0.0
        for _ in range(check_inputs):
            x = torch.randn(*input_shape, generator=gen)
            with torch.no_grad():
                expected = reference(x).numpy()
            error = max(error, float(np.abs(compiled(x.numpy()) - expected).max()))
    meta = {"format": "hakd.export/1", "target": profiler.target.key(), "input_shape": list(input_shape),
            "library": library.name, "threads": profiler.measure.threads, "predicted_latency_s": timing.latency_s,
            "cache_context": timing.context, "call_overhead_s": timing.call_overhead_s,
            "max_abs_error_vs_pytorch": error, "kernels": [{**dataclasses.asdict(k), "calls": k.calls} for k in timing.kernels]}
    atomic_write_text(folder / META, json.dumps(meta, indent=1))
    return ExportResult(folder, library, timing.latency_s, error)


def load(folder) -> VmModel:
    """Load an export folder written by :func:`export` (on a host that runs its target)."""
    meta_path = Path(folder) / META
    if not meta_path.is_file():
        raise DeployError(f"{folder} is not a hakd export folder (no {META}); write one with hakd.export.export")
    meta = json.loads(meta_path.read_text())
    return VmModel(Path(folder) / meta["library"], meta["input_shape"])


def export_onnx(gm: fx.GraphModule, path, example_input: torch.Tensor, opset: int = 17) -> Path:
    """Write ``gm`` as ONNX (torch's TorchScript exporter, opset 17; any batch size), for runtimes other than TVM's."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    was_training = gm.training
    gm.eval()
    try:
        with warnings.catch_warnings():  # the TorchScript exporter on purpose: the dynamo one needs torch.export
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(gm, (example_input,), str(tmp), dynamo=False, opset_version=opset,
                              input_names=["input"], output_names=["output"],
                              dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
        tmp.replace(path)
    except Exception as e:
        tmp.unlink(missing_ok=True)
        raise DeployError(f"ONNX export of the model to {path} failed: {type(e).__name__}: {str(e)[:300]}") from e
    finally:
        gm.train(was_training)
    return path


class OnnxRuntimeModel:
    """An ONNX file run by ONNX Runtime on the CPU, ``threads`` threads, every graph optimisation on:
    the runtime a user of another pruning library deploys with, timed the way :class:`VmModel` is.
    Needs onnxruntime (the bench extra); :meth:`available` says whether it is installed::

        model = OnnxRuntimeModel("out/export/model.onnx", threads=1)
        seconds = model.time(number=10, repeat=5)
    """

    def __init__(self, path, threads: int = 1):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        opts.intra_op_num_threads, opts.inter_op_num_threads = threads, 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        shape = self.session.get_inputs()[0].shape
        self.input_shape = [1 if not isinstance(d, int) else d for d in shape]

    @staticmethod
    def available() -> bool:
        import importlib.util

        return importlib.util.find_spec("onnxruntime") is not None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"input": np.ascontiguousarray(x, dtype=np.float32)})[0]

    def time(self, number: int = 10, repeat: int = 5, min_repeat_ms: int = 50) -> np.ndarray:
        """Seconds per inference, one value per repeat (each repeat at least ``min_repeat_ms``)."""
        import time

        x = np.zeros(self.input_shape, dtype=np.float32)
        self(x)
        out = []
        for _ in range(repeat):
            n, start = 0, time.perf_counter()
            while n < number or time.perf_counter() - start < min_repeat_ms / 1e3:
                self(x)
                n += 1
            out.append((time.perf_counter() - start) / n)
        return np.asarray(out)
