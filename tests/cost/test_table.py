import os
import signal
import sqlite3
import subprocess
import sys

import pytest

from hakd.cost.measure import Measurement
from hakd.cost.table import LatencyTable, TableError
from tests.conftest import REPO


def test_record_lookup_best_persist(tmp_path):
    path = tmp_path / "t.sqlite"
    t = LatencyTable(path)
    t.record("llvm", "sigA", "conv2d/oc8/v16", 1, Measurement(2e-5, 0.01, None, 0.1))
    t.record("llvm", "sigA", "conv2d/oc16/v16", 1, Measurement(1e-5, 0.02, None, 0.1))
    t.record("llvm", "sigA", "default", 1, Measurement(error="build failed"))
    t.close()
    again = LatencyTable(path)
    assert again.lookup("llvm", "sigA", "conv2d/oc8/v16", 1).latency_s == 2e-5
    assert again.lookup("llvm", "sigA", "conv2d/oc8/v16", 2) is None  # other thread count: another row
    schedule, m = again.best("llvm", "sigA", 1)
    assert schedule == "conv2d/oc16/v16" and m.latency_s == 1e-5
    assert again.lookup("llvm", "sigA", "default", 1).error == "build failed"
    assert again.summary() == {"llvm (threads=1, warm)": {"rows": 3, "kernels": 1, "failed": 1}}


def test_cache_contexts_are_separate_rows(tmp_path):
    t = LatencyTable(tmp_path / "t.sqlite")
    t.record("llvm", "sigA", "default", 1, Measurement(1e-5, 0.0))
    t.record("llvm", "sigA", "default", 1, Measurement(3e-5, 0.0), context="reuse-8MiB")
    assert t.lookup("llvm", "sigA", "default", 1).latency_s == 1e-5
    assert t.lookup("llvm", "sigA", "default", 1, context="reuse-8MiB").latency_s == 3e-5
    assert t.lookup("llvm", "sigA", "default", 1, context="cold") is None
    assert t.best("llvm", "sigA", 1, context="reuse-8MiB")[1].latency_s == 3e-5


def test_table_from_before_cache_contexts_is_upgraded_in_place(tmp_path):
    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE latency (target TEXT NOT NULL, signature TEXT NOT NULL, schedule TEXT NOT NULL, "
               "schedule_version INTEGER NOT NULL, threads INTEGER NOT NULL, latency_s REAL, noise REAL, error TEXT, "
               "compile_s REAL, device TEXT, host TEXT, measured_at REAL, "
               "PRIMARY KEY (target, signature, schedule, schedule_version, threads))")
    db.execute("INSERT INTO latency VALUES ('llvm','sigA','default',1,1,2e-5,0.01,NULL,0.3,'local','h',0)")
    db.commit()
    db.close()
    t = LatencyTable(path)
    assert t.lookup("llvm", "sigA", "default", 1, version=1).latency_s == 2e-5  # kept, as a warm timing
    assert [r["context"] for r in t.rows()] == ["warm"]


def test_older_schedule_versions_are_not_reused(tmp_path):
    t = LatencyTable(tmp_path / "t.sqlite")
    t.record("llvm", "sigA", "default", 1, Measurement(1e-5, 0.0), version=0)
    assert t.lookup("llvm", "sigA", "default", 1) is None


def test_merge_and_export(tmp_path):
    a, b = LatencyTable(tmp_path / "a.sqlite"), LatencyTable(tmp_path / "b.sqlite")
    a.record("llvm", "s1", "default", 1, Measurement(1e-5, 0.0))
    b.record("llvm", "s1", "default", 1, Measurement(9e-5, 0.0))
    b.record("llvm -mcpu=cortex-a57", "s2", "default", 1, Measurement(3e-5, 0.0), device="rpc://h:1/k")
    b.close()
    assert a.merge(tmp_path / "b.sqlite") == (1, 1)
    assert a.lookup("llvm", "s1", "default", 1).latency_s == 1e-5  # existing rows win
    assert a.export_csv(tmp_path / "all.csv") == 2
    assert "rpc://h:1/k" in (tmp_path / "all.csv").read_text()
    with pytest.raises(TableError, match="no latency table"):
        a.merge(tmp_path / "missing.sqlite")


def test_not_a_table_is_a_clear_error(tmp_path):
    (tmp_path / "junk.sqlite").write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(TableError, match="junk.sqlite.*a table file of its own"):
        LatencyTable(tmp_path / "junk.sqlite")
    db = sqlite3.connect(tmp_path / "other.sqlite")
    db.execute("CREATE TABLE latency (x INTEGER)")
    db.commit()
    with pytest.raises(TableError, match="other columns"):
        LatencyTable(tmp_path / "other.sqlite")


def test_another_programs_database_is_refused_and_left_unchanged(tmp_path):
    path = tmp_path / "app.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE people (name TEXT)")
    db.commit()
    db.close()
    before = path.read_bytes()
    for readonly in (False, True):
        with pytest.raises(TableError, match=r"not a hakd latency table.*\['people'\]"):
            LatencyTable(path, readonly=readonly)
    assert path.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["app.db"]  # no WAL files


def test_a_read_only_open_changes_nothing(tmp_path):
    path = tmp_path / "t.sqlite"
    LatencyTable(path).record("llvm", "sig", "default", 1, Measurement(1e-5, 0.0))
    before = path.read_bytes()
    table = LatencyTable(path, readonly=True)
    assert len(table) == 1 and path.read_bytes() == before
    with pytest.raises(TableError, match="no latency table at"):
        LatencyTable(tmp_path / "missing.sqlite", readonly=True)
    assert not (tmp_path / "missing.sqlite").exists()


def test_a_home_folder_path_is_expanded_and_a_missing_user_left_as_typed(tmp_path, monkeypatch):
    """``~/x`` is the home folder's x (the table is opened there, not in a folder named ``~``);
    ``~0`` names no user, so it stays a relative path, as a shell leaves it."""
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    LatencyTable("~/tables/t.sqlite").record("llvm", "sig", "default", 1, Measurement(1e-5, 0.0))
    assert len(LatencyTable(tmp_path / "home" / "tables" / "t.sqlite", readonly=True)) == 1
    with pytest.raises(TableError, match="no latency table at ~0/t.sqlite"):
        LatencyTable("~0/t.sqlite", readonly=True)
    assert LatencyTable("~0/t.sqlite").path == "~0/t.sqlite" and (tmp_path / "~0" / "t.sqlite").is_file()


WRITER = """
import sys, time
from hakd.cost.table import LatencyTable
from hakd.cost.measure import Measurement
t = LatencyTable(sys.argv[1])
for i in range(100000):
    t.record("llvm", f"sig{i}", "default", 1, Measurement(1e-6 * (i + 1), 0.0))
    print(i, flush=True)
"""


def test_sigkill_keeps_every_committed_row(tmp_path):
    path = tmp_path / "t.sqlite"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    last = -1
    for line in proc.stdout:
        last = int(line)
        if last >= 200:
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    t = LatencyTable(path)
    assert len(t) >= last + 1  # every row reported written is there
    assert t.lookup("llvm", f"sig{last}", "default", 1).latency_s == pytest.approx(1e-6 * (last + 1))


@pytest.mark.parametrize("column, value, why", [("latency_s", -5.0, "latency_s is -5.0"), ("latency_s", None, "latency_s is None"),
                                                ("threads", 0, "threads is 0"), ("signature", "", "signature is ''"),
                                                ("noise", -1.0, "noise is -1.0")])
def test_a_merged_table_with_a_bad_row_merges_nothing_and_is_left_as_it_was(tmp_path, column, value, why):
    a, b = LatencyTable(tmp_path / "a.sqlite"), LatencyTable(tmp_path / "b.sqlite")
    a.record("llvm", "s1", "default", 1, Measurement(1e-5, 0.0))
    b.record("llvm", "s2", "default", 1, Measurement(2e-5, 0.0))
    b.record("llvm", "s3", "default", 1, Measurement(3e-5, 0.0))
    b.db.execute(f"UPDATE latency SET {column} = ? WHERE signature = 's3'", (value,))  # as a hand edit or another tool
    b.close()
    before = (tmp_path / "b.sqlite").read_bytes()
    with pytest.raises(TableError, match=rf"b.sqlite: 1 of its 2 rows are not valid measurements .*{why}.*nothing was merged"):
        a.merge(tmp_path / "b.sqlite")
    assert len(a) == 1 and (tmp_path / "b.sqlite").read_bytes() == before


def test_a_table_written_before_cache_contexts_merges_as_warm_rows_without_being_changed(tmp_path):
    old = sqlite3.connect(tmp_path / "old.sqlite")
    old.execute("CREATE TABLE latency (target TEXT, signature TEXT, schedule TEXT, schedule_version INTEGER, threads "
                "INTEGER, latency_s REAL, noise REAL, error TEXT, compile_s REAL, device TEXT, host TEXT, measured_at REAL)")
    old.execute("INSERT INTO latency VALUES ('llvm', 's1', 'default', 1, 1, 1e-5, 0.0, NULL, 0.1, 'local', 'h', 0)")
    old.commit()
    old.close()
    before = (tmp_path / "old.sqlite").read_bytes()
    a = LatencyTable(tmp_path / "a.sqlite")
    assert a.merge(tmp_path / "old.sqlite") == (1, 0)
    assert a.lookup("llvm", "s1", "default", 1, version=1).latency_s == 1e-5
    assert (tmp_path / "old.sqlite").read_bytes() == before
