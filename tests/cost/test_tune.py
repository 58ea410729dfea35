"""Optional meta_schedule tuning: the tuned kernel is a candidate, timed, recorded and deployed."""

import json
import warnings

import numpy as np
import pytest
import torch
from torch import nn

from hakd.cost.lower import lower
from hakd.cost.profile import Profiler
from hakd.cost.schedules import ScheduleConfig, ScheduleError
from hakd.cost.table import LatencyTable
from hakd.export import META, export, load
from hakd.passes.trace import trace
from tests.cost.conftest import QUICK

pytestmark = pytest.mark.slow


def test_tuned_schedule_is_a_candidate_and_is_what_export_deploys(tmp_path):
    model = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU()).eval()
    gm = trace(model, torch.zeros(1, 8, 8, 8))
    table = LatencyTable(tmp_path / "t.sqlite")
    prof = Profiler("host", table=table, measure=QUICK, tune_trials=8)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prof.model(gm)  # a search that finds nothing valid warns and keeps the templates
    tuned = [r for r in table.rows() if r["schedule"].startswith("meta_schedule/")]
    if not tuned and any("no valid schedule" in str(w.message) for w in caught):
        assert prof.model(gm).kernels  # the model was still profiled, with hakd's templates
        pytest.skip("meta_schedule's runner found no valid schedule in 8 trials on this (loaded) machine")
    assert len(tuned) == 1 and tuned[0]["error"] is None and tuned[0]["latency_s"] > 0
    assert (tmp_path / "t.sqlite.tuning").is_dir()
    # a second profiler finds the tuned kernel in the database: no new tuning, no new compile
    again = Profiler("host", table=table, measure=QUICK, tune_trials=8)
    again.model(gm)
    assert again.compiles == 0
    # force the tuned schedule to win, then export: the deployed kernel is the tuned one
    table.db.execute("UPDATE latency SET latency_s = 1e-9 WHERE schedule LIKE 'meta_schedule/%'")
    result = export(gm, tmp_path / "out", again)
    meta = json.loads((tmp_path / "out" / META).read_text())
    assert any(k["schedule"] == tuned[0]["schedule"] for k in meta["kernels"])
    x = torch.randn(1, 8, 8, 8)
    np.testing.assert_allclose(load(tmp_path / "out")(x.numpy()), model(x).detach().numpy(), atol=1e-4)
    assert result.max_abs_error < 1e-4
    # a schedule the database does not hold is refused, not silently replaced
    (kernel,) = lower(gm).kernels.values()
    with pytest.raises(ScheduleError, match="no longer holds"):
        again.schedule(kernel.func, ScheduleConfig("meta_schedule", digest="0" * 12))


def test_only_cpu_tensor_intrinsics_are_parsed():
    """In a fresh process: meta_schedule's import of every tensor intrinsic (CUDA's: ~50 s) is
    replaced by the CPU ones, which are registered."""
    import subprocess
    import sys

    code = ("import sys; from hakd.cost.tune import cpu_tensor_intrinsics; cpu_tensor_intrinsics(); "
            "import tvm.s_tir.tensor_intrin; from tvm.s_tir import TensorIntrin; TensorIntrin.get('dot_16x4_vnni'); "
            "print(sorted(m.rsplit('.', 1)[1] for m in sys.modules if m.startswith('tvm.s_tir.tensor_intrin.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True).stdout
    assert out.split("\n")[-2] == str(["arm_cpu", "dot_product_common", "riscv_cpu", "x86"])
