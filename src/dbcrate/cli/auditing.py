"""Audit records of the CLI's backup, restore and prune (trigger ``manual``), appended to
the same chain as the agent's (``[agent] state_dir``). Best effort: a log that cannot be
written is a warning on stderr, never a failed command."""

from __future__ import annotations

import sys
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
