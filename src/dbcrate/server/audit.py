"""The per-org audit log in the metadata DB: each record's ``hash`` is the SHA-256 of
its canonical JSON (with ``prev``, the org's previous hash; 64 zeros first). Rows are
append-only (triggers refuse UPDATE and DELETE); :func:`verify` recomputes the chain and
finds an edited, removed or reordered row."""

from __future__ import annotations

import hashlib
import json
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from dbcrate.errors import IntegrityError
from dbcrate.server.models import AuditRecord

GENESIS = "0" * 64
_LOCK = threading.Lock()
FIELDS = ("seq", "at", "event", "actor", "agent", "job", "backup_id", "detail", "signature",
          "prev")


def now_rfc3339() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _hash(org_id: int, values: dict[str, Any]) -> str:
    body = {"org": org_id, **{k: values[k] for k in FIELDS}}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def append(db: Session, org_id: int, event: str, actor: str, *, agent: str | None = None,
           job: str | None = None, backup_id: str | None = None,
           detail: dict[str, Any] | None = None, signature: str | None = None,
           at: str | None = None) -> AuditRecord:
    """Append one record to ``org_id``'s chain and commit. Atomic (one transaction;
    appends in this process are serialised)."""
    with _LOCK:
        last = db.execute(select(AuditRecord.seq, AuditRecord.hash)
                          .where(AuditRecord.org_id == org_id)
                          .order_by(AuditRecord.seq.desc()).limit(1)).first()
        values: dict[str, Any] = {
            "seq": (last[0] + 1) if last else 1, "at": at or now_rfc3339(), "event": event,
            "actor": actor, "agent": agent, "job": job, "backup_id": backup_id,
            "detail": detail or {}, "signature": signature,
            "prev": last[1] if last else GENESIS,
        }
        rec = AuditRecord(org_id=org_id, hash=_hash(org_id, values), **values)
        db.add(rec)
        db.commit()
        return rec


@dataclass(frozen=True)
class Verified:
    records: int
    head: str


def verify(db: Session, org_id: int) -> Verified:
    """Recompute ``org_id``'s chain. Raises ``IntegrityError`` (exit 5) naming the seq of
    the first record that was edited, removed or reordered."""
    prev, expected = GENESIS, 1
    rows = db.scalars(select(AuditRecord).where(AuditRecord.org_id == org_id)
                      .order_by(AuditRecord.seq)).all()
    for rec in rows:
        values = {k: getattr(rec, k) for k in FIELDS}
        if rec.seq != expected or rec.prev != prev:
            raise IntegrityError(f"audit record seq {rec.seq}: the chain is broken before it "
                                 f"(expected seq {expected})",
                                 hint="a record was removed or reordered")
        if _hash(org_id, values) != rec.hash:
            raise IntegrityError(f"audit record seq {rec.seq} was edited (its hash does not "
                                 "match its content)",
                                 hint="compare with a copy of the metadata DB")
        prev, expected = rec.hash, expected + 1
    return Verified(len(rows), prev)


def count(db: Session, org_id: int) -> int:
    return int(db.scalar(select(func.count()).select_from(AuditRecord)
                         .where(AuditRecord.org_id == org_id)) or 0)
