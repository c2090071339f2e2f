"""The agent's state DB: ``STATE_DIR/state.sqlite3`` (SQLite, stdlib).

- ``jobs``: when each job was first seen and the last slot it handled (its run ended,
  ok or failed). Catch-up compares a job's latest slot with both.
- ``runs``: one row per run or skipped slot: trigger, slot, times, result, backup id,
  stored size, error message (messages never hold secrets).
- ``alerts``: the breach a ``max_age`` notification was last sent for (once per breach).
- ``audit_head`` belongs to ``dbcrate.audit``.

Times are stored as UTC epoch seconds (REAL). Every method is one transaction; the
object is safe to share between threads.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

FILE_NAME = "state.sqlite3"

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    job TEXT PRIMARY KEY, first_seen REAL NOT NULL, last_handled REAL);
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, trigger TEXT NOT NULL,
    slot REAL, started_at REAL NOT NULL, finished_at REAL, result TEXT NOT NULL,
    backup_id TEXT, size INTEGER, error TEXT);
CREATE INDEX IF NOT EXISTS runs_job ON runs (job, id);
CREATE TABLE IF NOT EXISTS alerts (job TEXT PRIMARY KEY, breach TEXT NOT NULL);
"""


def ts(t: datetime) -> float:
    return t.timestamp()


def dt(x: float | None) -> datetime | None:
    return None if x is None else datetime.fromtimestamp(x, UTC)


_SELECT_RUNS = ("SELECT id, job, trigger, slot, started_at, finished_at, result, backup_id, "
                "size, error FROM runs WHERE ")


@dataclass(frozen=True)
class Run:
    id: int
    job: str
    trigger: str
    slot: datetime | None
    started_at: datetime
    finished_at: datetime | None
    result: str  # running | ok | failed | skipped | interrupted
    backup_id: str | None
    size: int | None
    error: str | None


class StateDB:
    """Opens (creating) the state DB. Raises ``sqlite3.Error`` if it is unusable."""

    def __init__(self, state_dir: Path, *, create: bool = True) -> None:
        path = state_dir / FILE_NAME
        if create:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.conn = sqlite3.connect(path, timeout=30, check_same_thread=False,
                                    isolation_level=None)
        self.lock = threading.Lock()
        if create:
            with self.lock:
                self.conn.executescript(_SCHEMA)
            path.chmod(0o600)

    def close(self) -> None:
        self.conn.close()

    def _exec(self, sql: str, args: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        with self.lock:
            try:
                return self.conn.execute(sql, args).fetchall()
            except sqlite3.OperationalError as exc:
                if "no such table" in str(exc):
                    return []
                raise

    def see(self, job: str, now: datetime) -> tuple[datetime, datetime | None]:
        """Record ``job`` as seen (first time: now). Returns (first_seen, last_handled)."""
        self._exec("INSERT OR IGNORE INTO jobs (job, first_seen) VALUES (?, ?)", (job, ts(now)))
        row = self._exec("SELECT first_seen, last_handled FROM jobs WHERE job = ?", (job,))[0]
        first = dt(row[0])
        assert first is not None
        return first, dt(row[1])

    def handled(self, job: str, slot: datetime) -> None:
        """Mark ``slot`` of ``job`` handled (never moves backwards)."""
        self._exec("UPDATE jobs SET last_handled = MAX(COALESCE(last_handled, 0), ?) "
                   "WHERE job = ?", (ts(slot), job))

    def start(self, job: str, trigger: str, slot: datetime | None, now: datetime) -> int:
        """A new ``running`` run; returns its id."""
        with self.lock:
            cur = self.conn.execute(
                "INSERT INTO runs (job, trigger, slot, started_at, result) "
                "VALUES (?, ?, ?, ?, 'running')",
                (job, trigger, None if slot is None else ts(slot), ts(now)))
            assert cur.lastrowid is not None
            return cur.lastrowid

    def finish(self, run_id: int, result: str, now: datetime, *, backup_id: str | None = None,
               size: int | None = None, error: str | None = None) -> None:
        self._exec("UPDATE runs SET finished_at = ?, result = ?, backup_id = ?, size = ?, "
                   "error = ? WHERE id = ?", (ts(now), result, backup_id, size, error, run_id))

    def skipped(self, job: str, trigger: str, slot: datetime, now: datetime) -> None:
        self.finish(self.start(job, trigger, slot, now), "skipped", now,
                    error="the previous run of this job was still running")

    def crashed(self, now: datetime) -> int:
        """Mark runs a killed agent left ``running`` as interrupted; returns how many."""
        rows = self._exec("SELECT id FROM runs WHERE result = 'running'")
        self._exec("UPDATE runs SET result = 'interrupted', finished_at = ?, error = "
                   "'the agent stopped during the run' WHERE result = 'running'", (ts(now),))
        return len(rows)

    def _runs(self, where: str, args: tuple[object, ...]) -> list[Run]:
        rows = self._exec(_SELECT_RUNS + where, args)
        return [Run(int(r[0]), str(r[1]), str(r[2]), dt(r[3]),
                    dt(r[4]) or datetime.min, dt(r[5]), str(r[6]),
                    r[7], r[8], r[9])
                for r in rows]

    def runs(self, job: str | None = None) -> list[Run]:
        """Every run (of ``job``), oldest first."""
        if job is None:
            return self._runs("1 ORDER BY id", ())
        return self._runs("job = ? ORDER BY id", (job,))

    def last_run(self, job: str) -> Run | None:
        found = self._runs("job = ? ORDER BY id DESC LIMIT 1", (job,))
        return found[0] if found else None

    def last_success(self, job: str) -> Run | None:
        found = self._runs("job = ? AND result = 'ok' ORDER BY id DESC LIMIT 1", (job,))
        return found[0] if found else None

    def counts(self, job: str) -> dict[str, int]:
        rows = self._exec("SELECT result, COUNT(*) FROM runs WHERE job = ? AND result != "
                          "'running' GROUP BY result", (job,))
        return {str(r[0]): int(r[1]) for r in rows}

    def alerted(self, job: str) -> str | None:
        rows = self._exec("SELECT breach FROM alerts WHERE job = ?", (job,))
        return str(rows[0][0]) if rows else None

    def set_alerted(self, job: str, breach: str) -> None:
        self._exec("INSERT INTO alerts (job, breach) VALUES (?, ?) ON CONFLICT(job) DO "
                   "UPDATE SET breach = excluded.breach", (job, breach))
