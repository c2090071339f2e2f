"""Verifications in the agent and their evidence on this host (docs/agent.md, docs/verify.md).

A job's ``verify_schedule`` runs ``verify JOB --latest`` only in an agent whose ``[agent]
verify_identity_file`` is set (the verifier host holds the identity; backup hosts hold
recipients only); other agents skip such schedules, saying so once per job. Every
verification, the agent's and the CLI's, is audited (``verify.start``, then
``verify.ok``|``verify.fail``|``verify.alarm`` with ``server``, ``restore_seconds`` and the
record's key and SHA-256, or ``verify.error``) and kept in the state DB's table
``verifications`` (what ``dbcrate status`` shows as ``verify``). A job's verification slots
are kept in the state DB's ``jobs`` table under ``JOB/verify`` (a job name never holds a
``/``), so catch-up works as for backups.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from dbcrate.agent.logs import event
from dbcrate.agent.state import FILE_NAME, StateDB, dt, ts
from dbcrate.config import Config, JobConfig
from dbcrate.errors import DbcrateError, UsageError
from dbcrate.operations.keys import read_identities
from dbcrate.operations.pipeline import KeyMaterial
from dbcrate.operations.restore import Selector
from dbcrate.operations.verdict import worst
from dbcrate.operations.verify import Report, run_verify

#: verdict -> its audit event
EVENTS = {"pass": "verify.ok", "fail": "verify.fail", "alarm": "verify.alarm"}
#: verdicts that make ``dbcrate status`` exit 12
UNHEALTHY_RESULTS = ("fail", "alarm")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS verifications (
    id INTEGER PRIMARY KEY AUTOINCREMENT, job TEXT NOT NULL, trigger TEXT NOT NULL,
    started_at REAL NOT NULL, finished_at REAL, result TEXT NOT NULL, backup_id TEXT,
    target TEXT, record TEXT, record_sha256 TEXT, restore_seconds REAL, error TEXT);
CREATE INDEX IF NOT EXISTS verifications_job ON verifications (job, id);
"""
_COLUMNS = ("id", "job", "trigger", "started_at", "finished_at", "result", "backup_id",
            "target", "record", "record_sha256", "restore_seconds", "error")
Audit = Callable[..., None]
_told: set[str] = set()
_told_lock = threading.Lock()


def task_key(job: str) -> str:
    """The state DB ``jobs`` key of ``job``'s verification slots."""
    return f"{job}/verify"


def verifiable(config: Config) -> list[JobConfig]:
    """The jobs with a ``verify_schedule`` this agent runs: all of them with ``[agent]
    verify_identity_file``, none without (each skipped job is logged once)."""
    jobs = [j for j in config.jobs.values() if j.verify.schedule]
    if config.agent.verify_identity_file:
        return jobs
    for job in jobs:
        with _told_lock:
            if job.name in _told:
                continue
            _told.add(job.name)
        event(logging.INFO, f"{job.name}: verify_schedule skipped: this agent has no [agent] "
              "verify_identity_file (verifications run on the verifier host)", job=job.name,
              ev="verify.skip")
    return []


def agent_keys(config: Config, job: JobConfig) -> KeyMaterial:
    """The key material of the agent's verifications: ``[agent] verify_identity_file``
    and the job's ``encryption_key``. Raises ``UsageError``/``SecretError``/``InvalidKey``
    naming the file (never its content)."""
    path = config.agent.verify_identity_file
    if not path:
        raise UsageError("this agent has no [agent] verify_identity_file",
                         hint="set it on the verifier host's agent")
    return KeyMaterial(identities=read_identities(path), aes_key=job.encryption_key)


class VerifyLog:
    """The ``verifications`` table of ``STATE_DIR/state.sqlite3``. Raises
    ``sqlite3.Error``; each method is one statement."""

    def __init__(self, state_dir: Path, *, create: bool = True) -> None:
        if create:
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.conn = sqlite3.connect(state_dir / FILE_NAME, timeout=30,
                                    check_same_thread=False, isolation_level=None)
        if create:
            self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def start(self, job: str, trigger: str, now: datetime) -> int:
        cur = self.conn.execute("INSERT INTO verifications (job, trigger, started_at, result) "
                                "VALUES (?, ?, ?, 'running')", (job, trigger, ts(now)))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def finish(self, row: int, result: str, now: datetime, report: Report | None = None,
               error: str | None = None) -> None:
        r = report
        self.conn.execute(
            "UPDATE verifications SET finished_at = ?, result = ?, backup_id = ?, target = ?, "
            "record = ?, record_sha256 = ?, restore_seconds = ?, error = ? WHERE id = ?",
            (ts(now), result, r.backup_id if r else None, r.target if r else None,
             r.record if r else None, r.record_sha256 if r else None,
             r.restore_seconds if r else None, error, row))

    def _rows(self, where: str, args: tuple[object, ...]) -> list[dict[str, Any]]:
        try:
            rows = self.conn.execute(f"SELECT {', '.join(_COLUMNS)} FROM verifications "  # noqa: S608
                                     f"WHERE {where}", args).fetchall()
        except sqlite3.OperationalError as exc:
            if "no such table" in str(exc):
                return []
            raise
        return [dict(zip(_COLUMNS, r, strict=True)) for r in rows]

    def last(self, job: str) -> dict[str, Any] | None:
        """The newest finished verification of ``job`` (with a verdict or an error)."""
        found = self._rows("job = ? AND result != 'running' ORDER BY id DESC LIMIT 1", (job,))
        return found[0] if found else None

    def written(self, job: str, target: str) -> list[tuple[str, str]]:
        """``(record key, sha256)`` of the records this host wrote for ``job`` on
        ``target`` (what ``--history`` checks are still stored)."""
        return [(str(r["record"]), str(r["record_sha256"])) for r in self._rows(
            "job = ? AND target = ? AND record IS NOT NULL AND record_sha256 IS NOT NULL",
            (job, target))]

    def days(self, job: str, n: int, today: date) -> list[dict[str, str]]:
        """``n`` UTC days, oldest first: the day's worst verdict or ``none``."""
        first = today - timedelta(days=n - 1)
        since = datetime(first.year, first.month, first.day, tzinfo=UTC)
        per_day: dict[str, list[str]] = {}
        for r in self._rows("job = ? AND finished_at >= ?", (job, ts(since))):
            when = dt(r["finished_at"])
            if when is not None:
                per_day.setdefault(when.date().isoformat(), []).append(str(r["result"]))
        return [{"date": d, "result": worst(per_day.get(d, []))}
                for d in ((first + timedelta(days=i)).isoformat() for i in range(n))]


def verify_and_record(config: Config, job: JobConfig, selector: Selector, keys: KeyMaterial,
                      *, trigger: str, state_dir: Path, audit: Audit,
                      target: str | None = None) -> Report:
    """Run one verification, auditing it and keeping it in the state DB (best effort: a
    state DB that cannot be written is logged). Returns the report; raises what
    ``run_verify`` raises, after auditing ``verify.error``."""
    audit("verify.start", job=job.name, trigger=trigger)
    db, row = _open(state_dir, job.name, trigger)
    try:
        report = run_verify(config, job, selector, keys=keys, target=target)
    except (DbcrateError, KeyboardInterrupt) as exc:
        message = exc.message if isinstance(exc, DbcrateError) else "interrupted"
        audit("verify.error", job=job.name, trigger=trigger, error=message)
        _close(db, row, "interrupted" if isinstance(exc, KeyboardInterrupt) else "error",
               error=message)
        raise
    v = report.verdict
    audit(EVENTS[v.result], job=job.name, trigger=trigger, backup_id=report.backup_id,
          target=report.target, server=report.server, restore_seconds=report.restore_seconds,
          record=report.record, record_sha256=report.record_sha256, failed_at=v.failed_at)
    _close(db, row, v.result, report, v.reason)
    return report


def _open(state_dir: Path, job: str, trigger: str) -> tuple[VerifyLog | None, int]:
    try:
        db = VerifyLog(state_dir)
        return db, db.start(job, trigger, datetime.now(UTC))
    except (sqlite3.Error, OSError) as exc:
        logging.getLogger("dbcrate.verify").warning(
            "verification not recorded in the state DB: %s", exc)
        return None, 0


def _close(db: VerifyLog | None, row: int, result: str, report: Report | None = None,
           error: str | None = None) -> None:
    if db is None:
        return
    try:
        db.finish(row, result, datetime.now(UTC), report, error)
    except sqlite3.Error as exc:
        logging.getLogger("dbcrate.verify").warning(
            "verification not recorded in the state DB: %s", exc)
    finally:
        db.close()


def run_scheduled(config: Config, db: StateDB, state_dir: Path, audit: Audit, job: JobConfig,
                  trigger: str, slot: datetime | None) -> str:
    """The agent's ``verify JOB --latest``: never raises for the verification's failure.
    Marks the slot handled unless interrupted. Returns the result (``pass``, ``fail``,
    ``alarm``, ``error`` or ``interrupted``)."""
    event(logging.INFO, f"verification of {job.name} starts ({trigger})", job=job.name,
          ev="verify.start")
    try:
        keys = agent_keys(config, job)
    except DbcrateError as exc:
        audit("verify.start", job=job.name, trigger=trigger)
        audit("verify.error", job=job.name, trigger=trigger, error=exc.message)
        db_row = _open(state_dir, job.name, trigger)
        _close(*db_row, "error", error=exc.message)
        result, detail = "error", exc.message
    else:
        try:
            report = verify_and_record(config, job, Selector(latest=True), keys,
                                       trigger=trigger, state_dir=state_dir, audit=audit)
            result = report.verdict.result
            detail = f"backup {report.backup_id}: {report.verdict.reason or 'every check passed'}"
        except KeyboardInterrupt:
            result, detail = "interrupted", "aborted after the grace period"
        except DbcrateError as exc:
            result, detail = "error", exc.message
        except Exception as exc:  # a bug must not kill the agent
            logging.getLogger("dbcrate.agent").exception("internal error verifying %s",
                                                         job.name)
            result, detail = "error", f"internal error: {type(exc).__name__}"
    if slot is not None and result != "interrupted":
        db.handled(task_key(job.name), slot)
    level = logging.INFO if result == "pass" else logging.ERROR
    event(level, f"verification of {job.name}: {result}: {detail}", job=job.name,
          ev=EVENTS.get(result, "verify.error"))
    return result


def status_of(state_dir: Path, job: str, today: date, days: int = 14,
              ) -> tuple[dict[str, Any] | None, list[dict[str, str]]]:
    """``(last, days)`` of ``job``'s verifications from the state DB (none if it has no
    such table yet). ``last``: ``result``, ``trigger``, ``backup_id``, ``target``,
    ``record``, ``record_sha256``, ``restore_seconds``, ``error``, ``finished_at``
    (a datetime)."""
    if not (state_dir / FILE_NAME).exists():
        return None, [{"date": (today - timedelta(days=i)).isoformat(), "result": "none"}
                      for i in range(days - 1, -1, -1)]
    db = VerifyLog(state_dir, create=False)
    try:
        last = db.last(job)
        if last is not None:
            last = {k: v for k, v in last.items() if k not in ("id", "job", "started_at")}
            last["finished_at"] = dt(last["finished_at"])
        return last, db.days(job, days, today)
    finally:
        db.close()


def written_records(state_dir: Path, job: str, target: str) -> list[tuple[str, str]]:
    """``VerifyLog.written`` of ``state_dir`` ([] without a state DB or on a DB error)."""
    if not (state_dir / FILE_NAME).exists():
        return []
    try:
        db = VerifyLog(state_dir, create=False)
        try:
            return db.written(job, target)
        finally:
            db.close()
    except sqlite3.Error:
        return []
