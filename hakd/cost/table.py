"""The persistent latency table: every kernel measurement, in SQLite.

A row is keyed by target, kernel signature (op, shapes, structural hash), schedule
configuration, hakd's schedule version, threads and cache context (see
:func:`hakd.cost.measure.cache_context`). Each measurement is committed
as soon as it is taken (WAL journal), so a killed sweep loses at most the kernel it
was timing, and a rerun reuses every finished row.

>>> t = LatencyTable(":memory:")
>>> t.record("llvm", "conv2d|1x16x32x32|ab", "conv2d/oc8/v16", 1, Measurement(3.5e-5, 0.02))
>>> t.lookup("llvm", "conv2d|1x16x32x32|ab", "conv2d/oc8/v16", 1).latency_s
3.5e-05
"""

from __future__ import annotations

import csv
import math
import socket
import sqlite3
import time
from pathlib import Path
from typing import Dict, Iterator, Optional, Union

from hakd.checkpoint import expand_user
from hakd.cost.measure import Measurement
from hakd.cost.schedules import SCHEDULE_VERSION
from hakd.errors import HakdError

__all__ = ["LatencyTable", "TableError", "DEFAULT_TABLE"]

DEFAULT_TABLE = Path.home() / ".cache" / "hakd" / "latency.sqlite"

SCHEMA = """
CREATE TABLE IF NOT EXISTS latency (
    target TEXT NOT NULL,
    signature TEXT NOT NULL,
    schedule TEXT NOT NULL,
    schedule_version INTEGER NOT NULL,
    threads INTEGER NOT NULL,
    context TEXT NOT NULL,
    latency_s REAL,
    noise REAL,
    error TEXT,
    compile_s REAL,
    device TEXT,
    host TEXT,
    measured_at REAL,
    PRIMARY KEY (target, signature, schedule, schedule_version, threads, context)
);
"""
COLUMNS = ("target", "signature", "schedule", "schedule_version", "threads", "context", "latency_s", "noise", "error",
           "compile_s", "device", "host", "measured_at")
FIRST_COLUMNS = COLUMNS[:5] + COLUMNS[6:]  # hakd 0.1 tables: no context, every row timed warm
INSERT = f"INTO latency VALUES ({','.join('?' * len(COLUMNS))})"


def _invalid(row: dict) -> Optional[str]:
    """Why a table row is not a measurement hakd could have written, or None::

        >>> ok = dict(target="llvm", signature="s", schedule="c", schedule_version=1, threads=1, context="warm",
        ...           latency_s=2e-5, noise=0.01, error=None)
        >>> _invalid(ok), _invalid(dict(ok, latency_s=-5.0)), _invalid(dict(ok, latency_s=None, error="failed"))
        (None, 'latency_s is -5.0, not a positive finite number of seconds', None)
    """
    for key in ("target", "signature", "schedule", "context"):
        if not isinstance(row[key], str) or not row[key]:
            return f"{key} is {row[key]!r}, not a name"
    for key in ("schedule_version", "threads"):
        if isinstance(row[key], bool) or not isinstance(row[key], int) or row[key] < 1:
            return f"{key} is {row[key]!r}, not an integer >= 1"
    if row["error"] is not None:
        return None if isinstance(row["error"], str) and row["error"] else f"error is {row['error']!r}, not a message"
    latency = row["latency_s"]
    if isinstance(latency, bool) or not isinstance(latency, (int, float)) or not 0 < latency < math.inf:
        return f"latency_s is {latency!r}, not a positive finite number of seconds"
    if row["noise"] is not None and (not isinstance(row["noise"], (int, float)) or not 0 <= row["noise"] < math.inf):
        return f"noise is {row['noise']!r}, not a finite number >= 0"
    return None


class TableError(HakdError):
    """The latency table cannot be opened or is not a hakd table."""


class LatencyTable:
    """A SQLite latency table at ``path`` (created if missing; ``":memory:"`` for a throwaway one)."""

    def __init__(self, path: Union[str, Path] = DEFAULT_TABLE, readonly: bool = False):
        """``readonly``: open an existing table without changing the file in any way (list, export)."""
        on_disk = str(path) != ":memory:"
        self.path = str(expand_user(path)) if on_disk else ":memory:"
        if on_disk and readonly and not Path(self.path).is_file():
            raise TableError(f"no latency table at {self.path}")
        if on_disk and not readonly:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        try:
            if readonly and on_disk:
                self.db = sqlite3.connect(f"file:{self.path}?mode=ro", uri=True, timeout=30, isolation_level=None)
            else:
                self.db = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            tables = {r[0] for r in self.db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if tables and "latency" not in tables:  # someone else's database: leave it as it is
                raise TableError(f"{self.path} is not a hakd latency table (it holds the tables {sorted(tables)[:5]}); "
                                 "give hakd a table file of its own (--table)")
            cols = tuple(r[1] for r in self.db.execute("PRAGMA table_info(latency)"))
            if not readonly:
                if cols and cols not in (COLUMNS, FIRST_COLUMNS):
                    raise TableError(f"{self.path} has a latency table with other columns {list(cols)}; it is not "
                                     "hakd's: give hakd a table file of its own (--table)")
                self.db.execute("PRAGMA journal_mode=WAL")
                if cols == FIRST_COLUMNS:
                    self._add_context_column()
                self.db.executescript(SCHEMA)
                cols = tuple(r[1] for r in self.db.execute("PRAGMA table_info(latency)"))
        except sqlite3.DatabaseError as e:
            raise TableError(f"{self.path} is not a usable hakd latency table ({e}); give hakd a table file of its "
                             "own (--table)") from e
        if cols != COLUMNS and not (readonly and cols == FIRST_COLUMNS):
            raise TableError(f"{self.path} has a latency table with other columns {list(cols)}; give hakd a table "
                             "file of its own (--table)")
        self._select = ",".join("'warm'" if c == "context" and cols == FIRST_COLUMNS else c for c in COLUMNS)

    def _add_context_column(self) -> None:
        """Upgrade a table written before cache contexts: its rows were timed warm. One transaction."""
        select = ",".join("'warm'" if c == "context" else c for c in COLUMNS)
        self.db.executescript("BEGIN; ALTER TABLE latency RENAME TO latency_old;" + SCHEMA +
                              f"INSERT INTO latency SELECT {select} FROM latency_old; DROP TABLE latency_old; COMMIT;")

    def record(self, target: str, signature: str, schedule: str, threads: int, m: Measurement,
               device: str = "local", version: int = SCHEDULE_VERSION, context: str = "warm") -> None:
        row = (target, signature, schedule, version, threads, context, m.latency_s, m.noise, m.error, m.compile_s, device,
               socket.gethostname(), time.time())
        for attempt in range(3):  # another process may hold the write lock past sqlite's 30 s wait: try again
            try:
                self.db.execute("INSERT OR REPLACE " + INSERT, row)
                return
            except sqlite3.OperationalError as e:
                if "locked" in str(e) and attempt < 2:
                    continue
                why = ("another process held its write lock for over 90 s" if "locked" in str(e) else
                       "the file or its folder is read-only" if "readonly" in str(e).replace("-", "") else str(e))
                raise TableError(f"cannot write a measurement to the latency table {self.path}: {why}; the rows written "
                                 "so far are kept: give a writable --table, or rerun when the other process is done") from e

    def lookup(self, target: str, signature: str, schedule: str, threads: int, version: int = SCHEDULE_VERSION,
               context: str = "warm") -> Optional[Measurement]:
        row = self.db.execute(
            "SELECT latency_s, noise, error, compile_s FROM latency WHERE target=? AND signature=? AND schedule=? "
            "AND schedule_version=? AND threads=? AND context=?", (target, signature, schedule, version, threads, context)).fetchone()
        return None if row is None else Measurement(*row)

    def best(self, target: str, signature: str, threads: int, version: int = SCHEDULE_VERSION,
             context: str = "warm") -> Optional[tuple]:
        """(schedule, Measurement) of the fastest successful row for a kernel (ties: first schedule key), or None."""
        row = self.db.execute(
            "SELECT schedule, latency_s, noise, error, compile_s FROM latency WHERE target=? AND signature=? "
            "AND schedule_version=? AND threads=? AND context=? AND error IS NULL ORDER BY latency_s, schedule LIMIT 1",
            (target, signature, version, threads, context)).fetchone()
        return None if row is None else (row[0], Measurement(*row[1:]))

    def rows(self) -> Iterator[dict]:
        for row in self.db.execute(f"SELECT {self._select} FROM latency ORDER BY target, signature, schedule"):
            yield dict(zip(COLUMNS, row))

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM latency").fetchone()[0]

    def summary(self) -> Dict[str, dict]:
        out = {}
        for target, threads, context, n, kernels, failed in self.db.execute(
                "SELECT target, threads, context, COUNT(*), COUNT(DISTINCT signature), SUM(error IS NOT NULL) FROM latency "
                "GROUP BY target, threads, context"):
            out[f"{target} (threads={threads}, {context})"] = {"rows": n, "kernels": kernels, "failed": failed}
        return out

    def export_csv(self, path: Union[str, Path]) -> int:
        rows = list(self.rows())
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=COLUMNS)
            w.writeheader()
            w.writerows(rows)
        return len(rows)

    def merge(self, other: Union[str, Path]) -> tuple:
        """Add the rows of another table file (often from another machine); existing rows win.
        Every row is checked first (:func:`_invalid`): one bad row and nothing is merged.
        Returns (added, already present)."""
        if not Path(other).is_file():
            raise TableError(f"no latency table at {other}")
        src = LatencyTable(other, readonly=True)
        rows = list(src.rows())
        src.close()
        bad = [(row, why) for row in rows for why in [_invalid(row)] if why]
        if bad:
            row, why = bad[0]
            raise TableError(f"{other}: {len(bad)} of its {len(rows)} rows are not valid measurements (e.g. "
                             f"{row['signature']!r} {row['schedule']!r}: {why}); nothing was merged: merge a table "
                             "hakd wrote, or delete those rows from it first")
        added = kept = 0
        for row in rows:
            cur = self.db.execute("INSERT OR IGNORE " + INSERT, tuple(row[c] for c in COLUMNS))
            added += cur.rowcount
            kept += 1 - cur.rowcount
        return added, kept

    def close(self) -> None:
        self.db.close()
