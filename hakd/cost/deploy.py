"""Compile a whole model with the measured schedules, write its library, run it.

The deployed kernels are the measured kernels: every fused kernel of the model is
scheduled with the fastest configuration its Profiler recorded, then the Relax VM
executable is built with the weights embedded.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import tvm
from tvm import relax

from hakd.cost.schedules import ScheduleConfig
from hakd import interrupt
from hakd.errors import HakdError

__all__ = ["compile_scheduled", "write_library", "VmModel", "DeployError"]


class DeployError(HakdError):
    """A compiled model cannot be written or loaded."""


def compile_scheduled(gm, profiler, input_shape=None):
    """(executable, ModelTiming, input shape): ``gm`` built with each kernel's fastest measured schedule."""
    low = profiler.lower(gm, input_shape, bind_params=True)
    timing = profiler.lowered(low)
    mod = low.mod
    for k in timing.kernels:
        mod[k.kernel] = profiler.schedule(low.kernels[k.kernel].func, ScheduleConfig.from_key(k.schedule))
    with tvm.transform.PassContext(opt_level=3):
        executable = relax.build(mod, target=profiler.target.tvm_target())
    interrupt.check()  # a Ctrl-C during TVM's build can be lost inside it
    return executable, timing, low.input_shape


def write_library(executable, folder: Path, target) -> Path:
    """``model.so`` (cross-compiled when the target is another architecture and its compiler
    is installed), else ``model.tar`` (object files, linked on the board)."""
    fcompile = None
    if not target.runs_here():
        from tvm.support import cc

        compiler = f"{target.mtriple}-g++"
        if shutil.which(compiler) is None:
            path = folder / "model.tar"
            executable.export_library(str(path))
            return path
        fcompile = cc.cross_compiler(compiler)
    path, tmp = folder / "model.so", folder / ".model.tmp.so"
    executable.export_library(str(tmp), fcompile=fcompile)
    tmp.replace(path)
    return path


class VmModel:
    """A compiled model loaded on this host: ``model(x) -> numpy``; ``time()`` measures it."""

    def __init__(self, library: Path, input_shape):
        self.library = Path(library)
        if not self.library.is_file():
            raise DeployError(f"no compiled model at {self.library}")
        self.input_shape = tuple(input_shape)
        self.dev = tvm.cpu(0)
        self.vm = relax.VirtualMachine(tvm.runtime.load_module(str(self.library)), self.dev)
        self._input = self._main = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        """The output for input ``x``. Calls share one input buffer (allocating one per call
        cost ~10 us), written through a numpy view of it; the output is the VM's own fresh
        tensor, viewed, not copied (``copyfrom`` and ``.numpy()`` cost ~5 us each, a numpy
        copy and a view under 0.5 us: 2026-12-03, one Intel core). One thread at a time per
        loaded model, as for the VM itself."""
        x = np.asarray(x)
        if x.shape != self.input_shape:
            raise DeployError(f"{self.library} was compiled for input {self.input_shape}, got {x.shape}")
        if self._input is None:
            self._input, self._main = tvm.runtime.empty(self.input_shape, "float32", self.dev), self.vm["main"]
            self._input_view = np.from_dlpack(self._input)
        np.copyto(self._input_view, x, casting="unsafe")
        out = np.from_dlpack(self._main(self._input))  # keeps the VM's tensor alive as long as the array
        return out.copy() if np.may_share_memory(out, self._input_view) else out  # a model returning its input

    def time(self, number: int = 10, repeat: int = 5, min_repeat_ms: int = 50) -> np.ndarray:
        """Seconds per inference, one value per repeat (TVM's time_evaluator on the VM)."""
        from hakd.cost.measure import time_vm_main

        return np.asarray(time_vm_main(self.vm, self.dev, self.input_shape, number, repeat, min_repeat_ms))
