"""Helpers shared by the benchmark scripts."""

import csv
import dataclasses
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

import torch

from hakd import models

RESULTS = Path(__file__).parent / "results"
IMAGES = {"fashion-mnist": (1, 28, 28), "cifar10": (3, 32, 32)}  # channels, height, width


@dataclasses.dataclass(frozen=True)
class Bench:
    """The data set a benchmark runs on, and where its runs and results go: the real Fashion-MNIST
    by default (runs/bench/, results/NAME.csv), or CIFAR-10 from a folder the user gives
    (runs/bench/cifar10/, results/NAME_cifar10.csv); ``recipe``: another recipe's own runs and
    results (``long``: runs/bench/long/, results/NAME_long.csv); ``tag``: a run's own runs and results
    besides (``avx2``: runs/bench/avx2/, results/NAME_avx2.csv), e.g. for another kind of host.

    >>> Bench(recipe="long", tag="avx2").results("methods.csv"), str(Bench(tag="avx2").runs)
    ('methods_long_avx2.csv', 'runs/bench/avx2')
    """

    data: str = "fashion-mnist"
    root: Optional[str] = None
    recipe: str = ""
    tag: str = ""

    @property
    def shape(self) -> tuple:
        return (1, *IMAGES[self.data])

    @property
    def runs(self) -> Path:
        runs = Path("runs/bench") if self.data == "fashion-mnist" else Path("runs/bench") / self.data
        return runs.joinpath(*[t for t in (self.recipe, self.tag) if t])

    def results(self, name: str) -> str:
        """``snap.csv`` -> ``snap.csv`` (Fashion-MNIST), ``snap_cifar10.csv``, or ``snap_long.csv``
        (the long recipe on Fashion-MNIST)."""
        stem, dot, ext = name.partition(".")
        tags = ([self.data.replace("-", "_")] if self.data != "fashion-mnist" else []) + [t for t in (self.recipe, self.tag) if t]
        return "_".join([stem, *tags]) + dot + ext

    def cli(self) -> list:
        """The ``hakd train`` arguments that select this data set."""
        return ["--data", self.data] + (["--data-root", self.root] if self.root else [])


def progress(prefix: str):
    """A log for the long steps (staircase sweeps, budget rounds): timestamped lines on stderr,
    so that a run of hours shows where it is while the results stay on stdout."""
    return lambda line: print(f"{time.strftime('%H:%M:%S')} {prefix}: {line}", file=sys.stderr, flush=True)


def add_data_args(parser) -> None:
    parser.add_argument("--data", default="fashion-mnist", choices=sorted(IMAGES),
                        help="the data set (default: the real Fashion-MNIST)")
    parser.add_argument("--data-root", default=None,
                        help="cifar10: the folder holding cifar-10-batches-py (it cannot be downloaded here)")


def write_csv(name: str, rows: list) -> Path:
    """Write ``rows`` (dicts; a column some rows lack, such as one added after they were written,
    is left empty in those) to results/NAME and say so."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / name
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(dict.fromkeys(k for r in rows for k in r)), restval="")
        w.writeheader()
        w.writerows(rows)
    print(f"wrote {path}", flush=True)
    return path


def merge_rows(name: str, rows: list, key="model") -> list:
    """``rows`` after the rows of results/NAME whose ``key`` (a column, or a tuple of columns) none of
    ``rows`` has: a run on some models updates their rows and keeps the others'."""
    path = RESULTS / name
    if not path.is_file():
        return rows
    keys = (key,) if isinstance(key, str) else tuple(key)
    of = lambda r: tuple(r.get(k, "") for k in keys)  # noqa: E731
    with open(path, newline="") as f:
        mine = {of(r) for r in rows}
        return [r for r in csv.DictReader(f) if of(r) not in mine] + rows


def calibrated(name: str, shape=(1, 3, 32, 32)):
    """A zoo model in eval mode whose BatchNorm statistics come from 3 forward passes on random
    batches, so its activations (and comparisons between backends) are not degenerate."""
    torch.manual_seed(0)
    model = models.create(name, in_channels=shape[1]).train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape[1:]))
    return model.eval()


HIDDEN = "HAKD_BENCH_AVX512_HIDDEN"  # set in a benchmark rerun with AVX-512 hidden from CPUID


def cpu_flags() -> frozenset:
    """/proc/cpuinfo's flags of the first CPU, less AVX-512's when this process hides it."""
    from hakd.cost.target import os_cpu_flags

    flags = os_cpu_flags()
    return frozenset(f for f in flags if not f.startswith("avx512")) if os.environ.get(HIDDEN) else flags


def isa() -> str:
    """The host's widest vector instruction set, as hakd's kernels use it (every benchmark prints it):
    ``avx512``, ``avx2``, ``avx2 (avx512 hidden)`` (--hide-avx512) or the machine's name."""
    flags = cpu_flags()
    if "avx512f" in flags:
        return "avx512"
    if "avx2" in flags:
        return "avx2 (avx512 hidden)" if os.environ.get(HIDDEN) else "avx2"
    return platform.machine()


def host():
    """The target benchmarks time on: ``"host"``, or with AVX-512 hidden the host less AVX-512 (what
    hakd's ``"host"`` gives on a VM that hides AVX-512, :func:`hakd.cost.target.host_target`)."""
    from hakd.cost.target import host_target

    return host_target(cpu_flags()) if os.environ.get(HIDDEN) else "host"


def add_hide_avx512_arg(ap) -> None:
    ap.add_argument("--hide-avx512", action="store_true",
                    help="on an AVX-512 host, run as an AVX2 host would: AVX-512 hidden from CPUID (ONNX Runtime, "
                         "PyTorch) and hakd compiling for the host less AVX-512 (an emulation: see hide_avx512.c)")


def hide_avx512(asked: bool) -> None:
    """With ``asked``, run this script again with AVX-512 hidden from CPUID (benchmarks/hide_avx512.c,
    built into runs/bench/), unless this is that run; checks that the mask took hold."""
    if not asked:
        return
    if os.environ.get(HIDDEN):
        import ctypes

        if ctypes.CDLL(os.environ["LD_PRELOAD"]).hide_avx512_cpuid_avx512f():
            raise SystemExit("--hide-avx512: CPUID still reports AVX-512F in this process")
        return
    flags = cpu_flags()
    if "avx512f" not in flags or "cpuid_fault" not in flags:
        raise SystemExit("--hide-avx512 needs an x86-64 Linux host with AVX-512 and CPUID faulting "
                         f"(/proc/cpuinfo flags avx512f, cpuid_fault); this one has {isa()}")
    source = Path(__file__).parent / "hide_avx512.c"
    lib = Path("runs/bench/hide_avx512.so").resolve()
    if not lib.exists() or lib.stat().st_mtime < source.stat().st_mtime:
        lib.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["cc", "-O2", "-shared", "-fPIC", str(source), "-o", str(lib), "-ldl"], check=True)
    print(f"rerunning with AVX-512 hidden from CPUID ({lib})", file=sys.stderr, flush=True)
    os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, "LD_PRELOAD": str(lib), HIDDEN: "1"})


def onnxruntime_session(model: Path, profile_prefix: str = ""):
    """ONNX Runtime as every benchmark runs it: one thread, every graph optimisation, the CPU
    provider; ``profile_prefix``: write a per-node profile there (``session.end_profiling()``)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix:
        opts.enable_profiling, opts.profile_file_prefix = True, profile_prefix
    return ort.InferenceSession(str(model), opts, providers=["CPUExecutionProvider"])


def cpu() -> str:
    """LLVM's name for this CPU (``znver5``, ``sapphirerapids`` ...): result rows tell hosts apart by it."""
    import tvm

    return str(tvm.target.codegen.llvm_get_system_cpu())


def code_version() -> str:
    """The commit the benchmark runs (``+`` when hakd/ has uncommitted changes), for result rows."""
    import subprocess

    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent).stdout.strip()

    commit = git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+" if git("status", "--porcelain", "--untracked-files=no", "--", "../hakd") else "")
