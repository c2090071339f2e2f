"""Audit records of the CLI's backup, restore and prune (trigger ``manual``), appended to
the same chain as the agent's (``[agent] state_dir``), and the runs of ``dbcrate backup``
in the agent's state DB (so ``dbcrate status`` shows them). Best effort: a log or DB that
cannot be written is a warning on stderr, never a failed command."""

from __future__ import annotations

import sqlite3
import sys
from datetime import UTC, datetime
from typing import Any

from dbcrate.audit import AuditLog
from dbcrate.config import Config
from dbcrate.errors import DbcrateError


def record(cfg: Config, event: str, **fields: Any) -> None:
    """Append one record; warn on stderr if that fails."""
    try:
        AuditLog(cfg.agent.state_path).append(event, **fields)
    except (DbcrateError, OSError) as exc:
        msg = exc.message if isinstance(exc, DbcrateError) else str(exc)
        sys.stderr.write(f"dbcrate: warning: audit log not written: {msg}\n")


def backup_done(cfg: Config, job: str, result: Any) -> None:
    """``backup.ok`` per stored copy and ``backup.fail`` per failed target."""
    m = result.manifest
    for copy in result.copies:
        record(cfg, "backup.ok", job=job, trigger="manual", backup_id=m.id if m else None,
               target=copy.target, size=copy.size)
    for target, err in result.failures.items():
        record(cfg, "backup.fail", job=job, trigger="manual", target=target,
               error=err.message)


def run_started(cfg: Config, job: str) -> int | None:
    """Record a manual run of ``job`` in the state DB; its id (None if not recorded)."""
    from dbcrate.agent.state import StateDB

    try:
        db = StateDB(cfg.agent.state_path)
        try:
            return db.start(job, "manual", None, datetime.now(UTC))
        finally:
            db.close()
    except (sqlite3.Error, OSError) as exc:
        sys.stderr.write(f"dbcrate: warning: run not recorded in the state DB: {exc}\n")
        return None


def run_finished(cfg: Config, run_id: int | None, result: Any = None,
                 error: DbcrateError | None = None) -> None:
    """Record how the manual run ``run_id`` ended (ok only if every target has it)."""
    if run_id is None:
        return
    from dbcrate.agent.state import StateDB

    m = getattr(result, "manifest", None)
    ok = result is not None and result.ok
    message = error.message if error is not None else None
    if result is not None and not ok:
        message = "; ".join(f"target {t}: {e.message}" for t, e in result.failures.items())
    try:
        db = StateDB(cfg.agent.state_path)
        try:
            db.finish(run_id, "ok" if ok else "failed", datetime.now(UTC),
                      backup_id=m.id if m else None, size=m.stored.size if m else None,
                      error=message)
        finally:
            db.close()
    except (sqlite3.Error, OSError) as exc:
        sys.stderr.write(f"dbcrate: warning: run not recorded in the state DB: {exc}\n")
