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
prof = Profiler("host", table=LatencyTable(sys.argv[1]), measure=QUICK, build_workers=int(sys.argv[2]))
group_staircase(prof, gm, find_groups(gm), "conv1.0", adaptive=False)
"""


def rows(path):
    try:
        with sqlite3.connect(path, timeout=30) as db:
            return db.execute("SELECT COUNT(*) FROM latency").fetchone()[0]
    except sqlite3.OperationalError:
        return 0


def children(pid):
    """PIDs of the live processes whose parent is ``pid``."""
    out = []
    for stat in os.listdir("/proc"):
        try:
            fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if fields[1] == str(pid) and fields[0] != "Z":
            out.append(int(stat))
    return out


@pytest.mark.parametrize("workers", [1, 2])
def test_sigkill_mid_sweep_then_rerun(tiny, tmp_path, workers):
    path = tmp_path / "t.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", SWEEP, str(path), str(workers)], cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    deadline = time.time() + 240
    while rows(path) < 12 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)
    build_workers = children(proc.pid)
    assert len(build_workers) == (0 if workers == 1 else workers)  # widths are built ahead, 32 at a time
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    gone = time.time() + 15  # a build worker whose caller died reads the end of its pipe and ends
    while any(os.path.exists(f"/proc/{w}") and open(f"/proc/{w}/stat").read().rsplit(")", 1)[1].split()[0] != "Z"
              for w in build_workers) and time.time() < gone:
        time.sleep(0.2)
    assert time.time() < gone, "build workers outlived the sweep that started them"
    before = rows(path)
    assert before >= 12, "the sweep did not get far enough to be killed mid-way"
    gm, groups = tiny
    prof = Profiler("host", table=LatencyTable(path), measure=QUICK)
    sweep = group_staircase(prof, gm, groups, "conv1.0", adaptive=False)
    assert sweep.evaluations == groups["conv1.0"].width
    after = rows(path)
    assert prof.compiles == after - before  # nothing measured before the kill was measured again
    assert prof.table_hits >= before
