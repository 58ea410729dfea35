"""An aarch64 cross-compiled kernel, run under qemu-user, computes what the host kernel computes."""

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm.support import cc

from hakd.cost.lower import lower
from hakd.cost.measure import build_kernel
from hakd.cost.schedules import apply_schedule, candidates
from hakd.cost.target import parse_target

HARNESS = Path(__file__).with_name("kernel_harness.c")
TOOLS = ["aarch64-linux-gnu-gcc", "aarch64-linux-gnu-g++", "qemu-aarch64"]

pytestmark = [pytest.mark.slow, pytest.mark.skipif(
    any(shutil.which(t) is None for t in TOOLS),
    reason="needs Debian's gcc-aarch64-linux-gnu, g++-aarch64-linux-gnu and qemu-user (scripts/setup.sh installs them)")]


@pytest.mark.parametrize("block", [0, 4])  # plain NCHW; NEON's blocked channels (what cortex-a57 deploys)
def test_aarch64_kernel_under_qemu_matches_host(tiny, tmp_path, block):
    gm, _ = tiny
    include = Path(tvm_ffi.__file__).parent / "include"
    harness = tmp_path / "harness"
    subprocess.run(["aarch64-linux-gnu-gcc", "-O1", f"-I{include}", "-o", str(harness), str(HARNESS), "-ldl", "-rdynamic"], check=True)
    a57, host = parse_target("llvm -mcpu=cortex-a57"), parse_target("host")
    rng = np.random.default_rng(0)
    checked = 0
    for k in lower(gm, block=block).kernels.values():
        if k.kind == "generic":
            continue
        for cfg in [c for c in candidates(k.func) if c.template != "default"]:  # every hakd template, on NEON too
            func = apply_schedule(k.func, cfg)
            lib, _ = build_kernel(func, a57)
            so = tmp_path / f"{k.name}.so"
            lib.export_library(str(so), fcompile=cc.cross_compiler("aarch64-linux-gnu-g++"))
            args = [rng.standard_normal(s).astype("float32") for s in k.shapes]
            specs = []
            for i, a in enumerate(args):
                path = tmp_path / f"arg{i}.bin"
                a.tofile(path)
                specs.append(f"{path}:{','.join(map(str, a.shape))}")
            run = subprocess.run(["qemu-aarch64", "-L", "/usr/aarch64-linux-gnu", str(harness), str(so), *specs],
                                 capture_output=True, text=True, timeout=300)
            assert run.returncode == 0, run.stderr
            got = np.fromfile(tmp_path / f"arg{len(args) - 1}.bin", dtype="float32").reshape(k.shapes[-1])
            host_lib, _ = build_kernel(func, host)
            dev = [tvm.runtime.tensor(a, tvm.cpu()) for a in args]
            host_lib.mod["main"](*dev)
            np.testing.assert_allclose(got, dev[-1].numpy(), rtol=1e-4, atol=1e-4, err_msg=f"{k.name} {cfg.key()}")
            checked += 1
    assert checked >= 4
