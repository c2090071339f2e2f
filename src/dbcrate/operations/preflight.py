"""Per-target outcomes of one backup, and the read-only check made before dumping.

A backup's outcome is ``complete`` (every target holds it), ``partial`` (at least one
target holds the object and its manifest, some target failed) or ``failed`` (none does).
``dbcrate backup`` exits 11 when every job is complete or partial and one is partial.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from dbcrate.errors import DbcrateError, StorageError
from dbcrate.storage import Storage

#: exit code of a run where every job stored a complete backup on at least one target
#: and some target failed (docs/exit-codes.md)
PARTIAL_EXIT = 11


@dataclass
class TargetResult:
    """What one target did for one job's backup: the ``step`` it reached (``preflight``,
    ``upload``, ``manifest``, ``done``), its error if it failed, and its busy seconds."""

    target: str
    ok: bool = False
    step: str = "preflight"
    error: DbcrateError | None = None
    seconds: float = 0.0

    def json(self) -> dict[str, object]:
        return {"target": self.target, "ok": self.ok, "step": self.step,
                "error": None if self.error is None else naming(self.target, self.error),
                "seconds": round(self.seconds, 3)}


def naming(target: str, err: DbcrateError) -> str:
    """``err``'s message, prefixed with ``target NAME:`` unless it names the target."""
    return err.message if f"target {target}" in err.message else (
        f"target {target}: {err.message}")


def check(name: str, storage: Storage, job: str) -> TargetResult:
    """Check ``storage`` read-only: log in (SFTP: host key and credentials) and list the
    job's prefix. Never writes. Returns the result (``ok`` or the error, step
    ``preflight``); never raises a ``DbcrateError``."""
    result = TargetResult(name)
    t0 = time.monotonic()
    try:
        connect = getattr(storage, "connect", None)
        if callable(connect):
            connect()
        for _ in storage.list(f"{job}/"):
            break
        result.ok = True
    except DbcrateError as exc:
        result.error = exc
    except Exception as exc:  # an SDK error a backend failed to translate
        result.error = StorageError(f"target {name}: check failed: {type(exc).__name__}: {exc}")
    result.seconds = time.monotonic() - t0
    return result


def outcome(stored_on: int, failed: int) -> str:
    """``complete``, ``partial`` or ``failed`` from how many targets hold the backup and
    how many failed."""
    if stored_on and not failed:
        return "complete"
    return "partial" if stored_on else "failed"


def run_exit_code(outcomes: list[tuple[str, int]]) -> int:
    """The exit code of a run from each job's ``(outcome, exit code of its first
    failure)``: the first failed job's code, else 11 if one is partial, else 0."""
    for what, code in outcomes:
        if what == "failed":
            return code or 1
    return PARTIAL_EXIT if any(what == "partial" for what, _ in outcomes) else 0
