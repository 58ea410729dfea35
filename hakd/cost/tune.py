"""Optional meta_schedule tuning of single kernels, for users with time.

hakd's templates compile in ~0.1 s, which is what sweeping every width of every group
needs. TVM's meta_schedule searches a far larger space but takes minutes per kernel
(NOTES-TVM: 314 s for 64 trials of one conv), so it is meant for the kernels of a final
model: ``Profiler(tune_trials=64)`` adds, for every convolution, the best schedule
meta_schedule finds as one more candidate. Tuned schedules are kept in a meta_schedule
database beside the latency table; a candidate's key names the digest of its scheduled
kernel, so export deploys exactly the kernel that was timed (or says the database changed).

    tuner = Tuner("latency.sqlite.tuning", parse_target("host"), trials=64)
    func = tuner.tune(kernel.func)            # minutes the first time, then from the database
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import logging
import sys
import tempfile
from pathlib import Path
from typing import Optional

import tvm
import tvm_ffi
from tvm.s_tir import meta_schedule as ms

from hakd.config import ConfigError
from hakd.cost.schedules import TUNED, ScheduleConfig, ScheduleError
from hakd.cost.target import TargetSpec

__all__ = ["Tuner", "digest"]


def digest(func) -> str:
    """Short structural digest of a scheduled kernel (names the exact kernel in a table key)."""
    return f"{tvm_ffi.structural_hash(func.without_attr('global_symbol')) & 0xFFFFFFFFFFFF:012x}"


def cpu_tensor_intrinsics() -> None:
    """Register TVM's CPU tensor intrinsics only, before meta_schedule imports them all.

    meta_schedule imports ``tvm.s_tir.tensor_intrin`` in the tuning process and again in
    every builder worker; that package parses every intrinsic TVM has, CUDA's alone 52 s
    of TVMScript on this machine (measured), so each build outran the builder's 30 s
    timeout and tuning found nothing. hakd tunes CPU kernels: the package is entered
    without running its ``__init__``, and its CPU modules are imported (~2.6 s).
    """
    name = "tvm.s_tir.tensor_intrin"
    if name in sys.modules:
        return
    package = importlib.util.module_from_spec(importlib.util.find_spec(name))  # not executed: no CUDA, ROCm, ...
    sys.modules[name] = package
    for cpu in ("x86", "arm_cpu", "riscv_cpu"):
        importlib.import_module(f"{name}.{cpu}")


def _module(func) -> tvm.IRModule:
    return tvm.IRModule({"main": func.with_attr("global_symbol", "main")})


class Tuner:
    """meta_schedule tuning of kernels for one target, with a database in ``folder``."""

    def __init__(self, folder, target: TargetSpec, trials: int, threads: int = 1):
        if trials < 1:
            raise ConfigError(f"tune_trials must be at least 1, got {trials}")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        # meta_schedule needs the core count to plan parallel loops: the threads kernels run with
        self.target = dataclasses.replace(target, num_cores=target.num_cores or threads)
        self.trials = trials
        self.database = ms.database.JSONDatabase(work_dir=str(self.folder))

    def scheduled(self, func) -> Optional["tvm.tirx.PrimFunc"]:
        """The best tuned schedule of ``func`` in the database (named as ``func``), or None."""
        sch = ms.tir_integration.compile_tir(self.database, _module(func), self.target.tvm_target())
        if sch is None:
            return None
        name = func.attrs.get("global_symbol") if func.attrs is not None else None
        tuned = sch.mod["main"]
        return tuned.with_attr("global_symbol", name) if name is not None else tuned.without_attr("global_symbol")

    def tune(self, func) -> "tvm.tirx.PrimFunc":
        """Tune ``func`` (``trials`` measured candidates) unless the database already has it."""
        found = self.scheduled(func)
        if found is None:
            with tempfile.TemporaryDirectory() as work:
                # quiet its per-trial INFO lines; per call: each tune_tir resets the level to DEBUG
                logging.getLogger("tvm.s_tir.meta_schedule").setLevel(logging.WARNING)
                cpu_tensor_intrinsics()
                ms.tune_tir(_module(func), self.target.tvm_target(), work_dir=work, max_trials_global=self.trials,
                            num_trials_per_iter=min(self.trials, 16), database=self.database, cost_model="random",
                            builder=ms.builder.LocalBuilder(initializer=cpu_tensor_intrinsics),  # in each worker too
                            seed=0)  # reproducible search
            found = self.scheduled(func)
        if found is None:
            raise ScheduleError(f"meta_schedule found no valid schedule in {self.trials} trials")
        return found

    def candidate(self, func) -> ScheduleConfig:
        """The tuned candidate of a kernel (tuning it first if needed)."""
        return ScheduleConfig(TUNED, digest=digest(self.tune(func)))

    def apply(self, func, cfg: ScheduleConfig):
        """The tuned kernel a candidate names; ScheduleError when the database no longer holds it."""
        found = self.scheduled(func)
        if found is None or digest(found) != cfg.digest:
            raise ScheduleError(f"the tuning database {self.folder} no longer holds schedule {cfg.key()} "
                                "(it was tuned again or moved): profile the model again")
        return found
