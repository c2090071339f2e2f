"""The audit log: ``audit.jsonl`` in the state dir, one JSON object per line, each
record hashed into the next (docs/agent.md).

A record holds ``seq`` (1, 2, ...), ``ts`` (RFC 3339, UTC), ``event``, ``prev`` (the
previous record's ``hash``; 64 zeros for the first) and ``hash`` = SHA-256 hex of the
record without ``hash``, encoded as ``json.dumps(sort_keys=True, separators=(",", ":"),
ensure_ascii=False)`` in UTF-8; plus ``job``, ``trigger``, ``backup_id``, ``target``,
``size``, ``error`` where they apply. Appends from any number of processes (the agent,
the CLI) form one chain: each append holds an exclusive ``flock`` on the file while it
reads the head and writes its line. The chain's head is also kept in the state DB
(``state.sqlite3``, table ``audit_head``), so a cut tail is detected too.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbcrate.errors import DbcrateError, IntegrityError

GENESIS = "0" * 64
FILE_NAME = "audit.jsonl"
STATE_DB = "state.sqlite3"
EVENTS = frozenset({
    "agent.start", "agent.stop", "config.reload", "config.reject", "backup.start",
    "backup.ok", "backup.fail", "backup.skip", "retain.delete", "restore.start",
    "restore.ok", "restore.fail", "notify.fail",
    "verify.start", "verify.ok", "verify.fail", "verify.alarm", "verify.error",
})


class AuditChainBroken(IntegrityError):
    """The audit log was edited, cut, or has records deleted or reordered (exit 5)."""

    default_hint = "the audit log is not what was written; compare it with a copy " \
                   "(backups of the state dir, a log shipper) to see what changed"


class AuditError(DbcrateError):
    """The audit log cannot be read or written (exit 4)."""

    exit_code = 4


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def record_hash(record: dict[str, Any]) -> str:
    """SHA-256 hex of ``record`` without its ``hash`` key, canonically encoded."""
    body = {k: v for k, v in record.items() if k != "hash"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _last_line(f: Any) -> bytes:
    """The last non-empty line of the binary file ``f`` (b"" if none)."""
    f.seek(0, os.SEEK_END)
    end = f.tell()
    block = b""
    pos = end
    while pos > 0:
        step = min(65536, pos)
        pos -= step
        f.seek(pos)
        block = f.read(step) + block
        stripped = block.rstrip(b"\n")
        if b"\n" in stripped:
            return bytes(stripped.rsplit(b"\n", 1)[1])
    return bytes(block.rstrip(b"\n"))


@dataclass(frozen=True)
class Head:
    seq: int
    hash: str


def load_head(state_dir: Path) -> Head | None:
    """The head the state DB holds (None if it holds none)."""
    db = state_dir / STATE_DB
    if not db.exists():
        return None
    try:
        with contextlib.closing(sqlite3.connect(db, timeout=30)) as conn:
            row = conn.execute("SELECT seq, hash FROM audit_head WHERE id = 1").fetchone()
    except sqlite3.Error:
        return None
    return Head(int(row[0]), str(row[1])) if row else None


def _store_head(state_dir: Path, head: Head) -> None:
    with contextlib.closing(sqlite3.connect(state_dir / STATE_DB, timeout=30)) as conn, conn:
        conn.execute("CREATE TABLE IF NOT EXISTS audit_head "
                     "(id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER, hash TEXT)")
        conn.execute("INSERT INTO audit_head (id, seq, hash) VALUES (1, ?, ?) ON CONFLICT(id) "
                     "DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
                     (head.seq, head.hash))


class AuditLog:
    """Appends to ``STATE_DIR/audit.jsonl``; safe across threads and processes."""

    def __init__(self, state_dir: Path) -> None:
        self.dir = state_dir
        self.path = state_dir / FILE_NAME

    def append(self, event: str, **fields: Any) -> dict[str, Any]:
        """Append one record (fields that are None are left out) and return it.

        Atomic with respect to other appenders (flock). Raises ``AuditError`` if the
        log cannot be written, ``AuditChainBroken`` if its last line is not a record."""
        if event not in EVENTS:
            raise ValueError(f"unknown audit event {event!r}")
        try:
            self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError as exc:
            raise AuditError(f"cannot open the audit log {self.path}: "
                             f"{exc.strerror or exc}") from None
        with os.fdopen(fd, "r+b") as f:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX)
            try:
                last = _last_line(f)
                seq, prev = 1, GENESIS
                if last:
                    try:
                        tail = json.loads(last)
                        seq, prev = int(tail["seq"]) + 1, str(tail["hash"])
                    except (ValueError, KeyError, TypeError):
                        raise AuditChainBroken(f"the last line of {self.path} is not an "
                                               "audit record; refusing to extend it") from None
                record: dict[str, Any] = {"seq": seq, "ts": now_rfc3339(), "event": event,
                                          "prev": prev}
                record.update({k: v for k, v in fields.items() if v is not None})
                record["hash"] = record_hash(record)
                line = json.dumps(record, sort_keys=True, separators=(",", ":"),
                                  ensure_ascii=False) + "\n"
                f.seek(0, os.SEEK_END)
                f.write(line.encode("utf-8"))
                f.flush()
                os.fsync(f.fileno())
                _store_head(self.dir, Head(seq, record["hash"]))
            except OSError as exc:
                raise AuditError(f"cannot append to the audit log {self.path}: "
                                 f"{exc.strerror or exc}") from None
            finally:
                fcntl.flock(f.fileno(), fcntl.LOCK_UN)
        return record


def read(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line number, record)`` for each line. Raises ``AuditChainBroken`` for a line
    that is not a JSON object, ``AuditError`` if the file cannot be read."""
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 (closed by the with below)
    except OSError as exc:
        raise AuditError(f"cannot read the audit log {path}: {exc.strerror or exc}") from None
    with f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                raise AuditChainBroken(f"{path}: line {n} is not a JSON record") from None
            if not isinstance(record, dict):
                raise AuditChainBroken(f"{path}: line {n} is not a JSON object")
            yield n, record


def verify(state_dir: Path) -> int:
    """Check the whole chain of ``STATE_DIR/audit.jsonl``; returns the record count.

    Raises ``AuditChainBroken`` naming the line and seq of the first edited, deleted or
    reordered record, or the cut tail (fewer records than the state DB's head)."""
    path = state_dir / FILE_NAME
    prev, expected, count = GENESIS, 1, 0
    for n, rec in read(path):
        seq = rec.get("seq")
        where = f"{path}: line {n} (seq {seq})"
        if rec.get("hash") != record_hash(rec):
            raise AuditChainBroken(f"{where}: record was edited (its hash does not match)")
        if seq != expected:
            what = ("deleted or moved" if isinstance(seq, int) and seq > expected
                    else "reordered")
            raise AuditChainBroken(f"{where}: expected seq {expected}: a record was {what}")
        if rec.get("prev") != prev:
            raise AuditChainBroken(f"{where}: prev does not match the hash of the record "
                                   "before it (a record was deleted or reordered)")
        prev, expected, count = rec["hash"], expected + 1, count + 1
    head = load_head(state_dir)
    if head is not None and head.seq > count:
        raise AuditChainBroken(f"{path}: the chain ends at seq {count} but the state DB "
                               f"head is seq {head.seq}: the tail was cut")
    if head is not None and head.seq == count and head.hash != prev:
        raise AuditChainBroken(f"{path}: line of seq {count}: its hash differs from the "
                               "state DB head (the last record was replaced)")
    return count
