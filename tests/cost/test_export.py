import json

import numpy as np
import pytest
import torch

from hakd.cost.deploy import DeployError
from hakd.cost.profile import Profiler
from hakd.cost.table import INSERT, LatencyTable
from hakd.export import META, export, load
from tests.cost.conftest import QUICK

pytestmark = pytest.mark.slow


def test_export_runs_the_measured_kernels_and_matches_pytorch(tiny, tmp_path):
    gm, _ = tiny
    prof = Profiler("host", table=LatencyTable(tmp_path / "t.sqlite"), measure=QUICK)
    result = export(gm, tmp_path / "out", prof)
    assert result.library.name == "model.so" and result.max_abs_error < 1e-4
    meta = json.loads((tmp_path / "out" / META).read_text())
    assert meta["target"] == prof.target.key() and meta["input_shape"] == [1, 3, 16, 16]
    # every deployed kernel's schedule is the fastest one recorded in the table for its signature
    for k in meta["kernels"]:
        best_schedule, best = prof.table.best(prof.target.key(), k["signature"], QUICK.threads, context=meta["cache_context"])
        assert k["schedule"] == best_schedule and k["latency_s"] == best.latency_s
    model = load(tmp_path / "out")
    x = torch.randn(1, 3, 16, 16)
    with torch.no_grad():
        np.testing.assert_allclose(model(x.numpy()), gm(x).numpy(), atol=1e-4)
        first, kept = model(x.numpy()), model(x.numpy()).copy()  # each call's output is its own array
        second = model(x.double().numpy() + 1)  # any float input, cast as it is written into the input buffer
        np.testing.assert_array_equal(first, kept)
        np.testing.assert_allclose(second, gm(x + 1).numpy(), atol=1e-4)
    assert (model.time(number=2, repeat=2, min_repeat_ms=1) > 0).all()
    with pytest.raises(DeployError, match=r"compiled for input \(1, 3, 16, 16\)"):
        model(np.zeros((2, 3, 16, 16), dtype="float32"))


def test_cross_export_for_a_board(tiny, tmp_path):
    gm, _ = tiny
    prof = Profiler("host", table=LatencyTable(tmp_path / "t.sqlite"), measure=QUICK, channel_block=4)  # NEON's block
    prof.model(gm)  # schedules chosen on this host stand in for a board's in this test
    from hakd.cost.deploy import compile_scheduled, write_library
    from hakd.cost.target import parse_target

    board = parse_target("llvm -mcpu=cortex-a57")
    prof.target = board  # compile for the board with the recorded schedules' table rows
    prof.table = LatencyTable(tmp_path / "t.sqlite")
    for row in list(prof.table.rows()):  # copy rows to the board's key (a real board would have measured them)
        prof.table.db.execute("INSERT OR IGNORE " + INSERT, (board.key(), *list(row.values())[1:]))
    executable, timing, _ = compile_scheduled(gm, prof)
    path = write_library(executable, tmp_path, board)
    assert path.suffix in (".so", ".tar") and path.stat().st_size > 0


def test_load_of_a_non_export_folder_is_clear(tmp_path):
    with pytest.raises(DeployError, match="not a hakd export folder"):
        load(tmp_path)
