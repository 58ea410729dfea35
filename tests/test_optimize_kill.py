"""hakd.optimize killed with SIGKILL at several points, then run again with the same command: the
same student as an uninterrupted run.

Both read copies of one latency table that earlier runs filled until a run measured nothing new,
so that they see the same measurements: a run that builds kernels times its winners again and
keeps the lower value, so two runs on a table that is still filling see different numbers by
design (the first run's choices, made on values it later lowered, can differ from a second
run's, which then measures kernels the first never needed). A kill while kernels are being
timed is tests/cost/test_sweep_resume.py's."""

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time

import pytest
import torch

from hakd.plan import PrunePlan
from tests.conftest import REPO

pytestmark = pytest.mark.slow

RUN = """
import sys, torch
import hakd
from hakd.cost.table import LatencyTable
from tests.conftest import band_split
from tests.test_api import DISTIL, PRUNE, Widest
torch.manual_seed(0)
model = Widest()
hakd.optimize(model, "host", (band_split(96), band_split(32, seed=1)), prune=PRUNE, budget=0.7, distill=DISTIL,
              table=LatencyTable(sys.argv[1]), out=sys.argv[2], log=print)
"""


def _start(table, out):
    return subprocess.Popen([sys.executable, "-c", RUN, str(table), str(out)], cwd=REPO, stdout=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO), "TVM_NUM_THREADS": "1"})


def _rows(table) -> list:
    with sqlite3.connect(table) as db:
        return sorted(db.execute("SELECT * FROM latency").fetchall(), key=repr)


def _settled_run(table, out, runs=3) -> None:
    """Run to the end on a copy of ``table`` until a run leaves it unchanged (that run's folder is
    ``out``), copying each run's measurements back into ``table``."""
    copy = table.with_name("settling.sqlite")
    for _ in range(runs):
        shutil.rmtree(out, ignore_errors=True)
        shutil.copy(table, copy)
        assert _start(copy, out).wait(timeout=600) == 0
        if _rows(copy) == _rows(table):
            return
        shutil.copy(copy, table)
    raise AssertionError(f"the latency table still changed after {runs} runs on it")


def _kill_when(proc, reached, timeout=300) -> bool:
    """SIGKILL ``proc`` as soon as ``reached()``; False if it ended first."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        if reached():
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("the run reached neither the kill point nor its end")


def test_killed_at_several_points_then_rerun_gives_the_uninterrupted_student(tmp_path):
    assert _start(tmp_path / "t.sqlite", tmp_path / "first").wait(timeout=600) == 0  # fills the table
    _settled_run(tmp_path / "t.sqlite", tmp_path / "whole")  # uninterrupted, on a table it leaves as it was
    shutil.copy(tmp_path / "t.sqlite", tmp_path / "killed.sqlite")
    out = tmp_path / "killed"
    points = {  # in pipeline order; each kill lands after the point, the rerun resumes from what was kept
        "Fisher, mid-run": lambda: (out / "fisher" / "checkpoint.pt").is_file(),
        "staircases, part written": lambda: (out / "fisher" / "staircases.json").is_file(),
        "trials, the first student training": lambda: any((out / "trials").glob("*/config.json")),
        "trials, a later student": lambda: len(list((out / "trials").glob("*/model.pt"))) >= 1,
        "distillation of the kept student": lambda: (out / "distill" / "config.json").is_file(),
        "the uniform student's distillation": lambda: (out / "uniform" / "distill" / "config.json").is_file(),
    }
    killed = [name for name, reached in points.items() if _kill_when(_start(tmp_path / "killed.sqlite", out), reached)]
    assert len(killed) >= 4, f"too few kills landed before the run ended: {killed}"
    assert _start(tmp_path / "killed.sqlite", out).wait(timeout=600) == 0  # the same command, to the end
    assert _rows(tmp_path / "killed.sqlite") == _rows(tmp_path / "t.sqlite"), "the killed runs measured kernels anew"
    whole = tmp_path / "whole"
    for folder in ("student", "uniform"):
        if (whole / folder / "plan.json").is_file() or (out / folder / "plan.json").is_file():
            assert PrunePlan.load(out / folder / "plan.json") == PrunePlan.load(whole / folder / "plan.json"), folder
    for run in ("distill", "uniform/distill"):
        if (whole / run).is_dir() or (out / run).is_dir():
            a = torch.load(out / run / "model.pt", weights_only=False)["model"].state_dict()
            b = torch.load(whole / run / "model.pt", weights_only=False)["model"].state_dict()
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), run
    decisions = [json.loads((run / "report" / "report.json").read_text())["decision"] for run in (out, whole)]
    for d in decisions:
        d["fit"].pop("trial_seconds")  # the one thing that differs: how long the trials took
    assert decisions[0] == decisions[1]
