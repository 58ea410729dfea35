"""A real staircase sweep killed with SIGKILL: the rerun reuses every finished measurement."""

import os
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from hakd.cost.profile import Profiler
from hakd.sweep import group_staircase
from hakd.cost.table import LatencyTable
from tests.conftest import REPO
from tests.cost.conftest import QUICK

pytestmark = pytest.mark.slow

SWEEP = """
import sys, torch
from hakd.cost.profile import Profiler
from hakd.sweep import group_staircase
from hakd.cost.table import LatencyTable
from hakd.passes.groups import find_groups
from hakd.passes.trace import trace
from tests.cost.conftest import QUICK, TinyRes, randomised
torch.manual_seed(0)
gm = trace(randomised(TinyRes()), torch.zeros(1, 3, 16, 16))
group_staircase(Profiler("host", table=LatencyTable(sys.argv[1]), measure=QUICK), gm, find_groups(gm), "conv1.0", adaptive=False)
"""


def rows(path):
    try:
        with sqlite3.connect(path, timeout=30) as db:
            return db.execute("SELECT COUNT(*) FROM latency").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def test_sigkill_mid_sweep_then_rerun(tiny, tmp_path):
    path = tmp_path / "t.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", SWEEP, str(path)], cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 240
    while rows(path) < 12 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    before = rows(path)
    assert before >= 12, "the sweep did not get far enough to be killed mid-way"
    gm, groups = tiny
    prof = Profiler("host", table=LatencyTable(path), measure=QUICK)
    sweep = group_staircase(prof, gm, groups, "conv1.0", adaptive=False)
    assert sweep.evaluations == groups["conv1.0"].width
    after = rows(path)
    assert prof.compiles == after - before  # nothing measured before the kill was measured again
    assert prof.table_hits >= before
