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

__all__ = ["export", "export_onnx", "load", "ExportResult", "META"]

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
