"""hakd.optimize killed with SIGKILL at several points, then run again with the same command: the
same student as an uninterrupted run (which reads the same latency table, so that both see the
same measurements)."""

import json
import os
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


def _rows(path) -> int:
    try:
        with sqlite3.connect(path, timeout=30) as db:
            return db.execute("SELECT COUNT(*) FROM latency").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def _start(table, out):
    return subprocess.Popen([sys.executable, "-c", RUN, str(table), str(out)], cwd=REPO, stdout=subprocess.DEVNULL,
                            env={**os.environ, "PYTHONPATH": str(REPO), "TVM_NUM_THREADS": "1"})


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
    table, out = tmp_path / "t.sqlite", tmp_path / "killed"
    points = {  # in pipeline order; each kill lands after the point, the rerun resumes from what was kept
        "Fisher, mid-run": lambda: (out / "fisher" / "checkpoint.pt").is_file(),
        "staircases, a few kernels timed": lambda: _rows(table) >= 5,
        "staircases, more timed": lambda: _rows(table) >= 25,
        "trials, the first student training": lambda: any((out / "trials").glob("*/config.json")),
        "distillation of the kept student": lambda: (out / "distill" / "config.json").is_file(),
        "the uniform student's distillation": lambda: (out / "uniform" / "distill" / "config.json").is_file(),
    }
    killed = []
    for name, reached in points.items():
        if _kill_when(_start(table, out), reached):
            killed.append(name)
    assert len(killed) >= 4, f"too few kills landed before the run ended: {killed}"
    finish = _start(table, out)
    assert finish.wait(timeout=600) == 0
    reference = _start(table, tmp_path / "whole")  # uninterrupted, on the same measurements
    assert reference.wait(timeout=600) == 0
    for folder in ("student", "uniform"):
        assert PrunePlan.load(out / folder / "plan.json") == PrunePlan.load(tmp_path / "whole" / folder / "plan.json"), folder
    for run in ("distill", "uniform/distill"):
        a = torch.load(out / run / "model.pt", weights_only=False)["model"].state_dict()
        b = torch.load(tmp_path / "whole" / run / "model.pt", weights_only=False)["model"].state_dict()
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), run
    decisions = [json.loads((run / "report" / "report.json").read_text())["decision"] for run in (out, tmp_path / "whole")]
    for d in decisions:
        d["fit"].pop("trial_seconds")  # the one thing that differs: how long the trials took
    assert decisions[0] == decisions[1]
