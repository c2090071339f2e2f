"""Verification records (docs/verify.md, docs/format.md): one JSON object per verdict,
stored in the target read from as ``{data_key}.{UTC time}.verify.json`` and never
overwritten. A record holds the result, times, checks (kind, status; user checks by
name), the manifest's and the object's SHA-256 and versions -- no schema, table or column
name, no query text, no value. Records chain per job and target (``previous``: the
SHA-256 of the job's newest record on that target when it was written) and carry an
HMAC-SHA256 keyed by HKDF from the identity or ``encryption_key``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dbcrate import catalog
from dbcrate.operations.pipeline import KeyMaterial
from dbcrate.operations.verdict import worst
from dbcrate.storage import Storage

SUFFIX = ".verify.json"
FORMAT = 1
_INFO = b"dbcrate verification record v1"
MAX_RECORD_SIZE = 1 << 20


def record_key(data_key: str, when: datetime) -> str:
    """``{data_key}.{YYYYMMDDTHHMMSSffffffZ}.verify.json``."""
    return f"{data_key}.{when.astimezone(UTC):%Y%m%dT%H%M%S%fZ}{SUFFIX}"


def mac_key(keys: KeyMaterial) -> bytes | None:
    """The record MAC key: HKDF-SHA256 of the job's ``encryption_key``, else of the first
    age identity (None without either: the record then has no MAC)."""
    secret = keys.aes_key or (keys.identities[0].encode() if keys.identities else None)
    if secret is None:
        return None
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_INFO).derive(secret)


def _mac_input(body: dict[str, Any]) -> bytes:
    return json.dumps({k: v for k, v in body.items() if k != "mac"}, sort_keys=True,
                      separators=(",", ":")).encode()


@dataclass(frozen=True)
class Record:
    key: str
    raw: bytes
    body: dict[str, Any]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.raw).hexdigest()

    @property
    def verified_at(self) -> str:
        return str(self.body.get("verified_at", ""))

    @property
    def result(self) -> str:
        return str(self.body.get("result", ""))

    def mac_ok(self, key: bytes) -> bool:
        tag = self.body.get("mac")
        return isinstance(tag, str) and hmac.compare_digest(
            hmac.new(key, _mac_input(self.body), hashlib.sha256).hexdigest(), tag)


def read_records(storage: Storage, job: str) -> list[Record]:
    """Every verification record of ``job`` on ``storage``, oldest first (by
    ``verified_at``); an unreadable one is kept with an empty body (the chain check
    reports it). Raises ``StorageError``."""
    out: list[Record] = []
    for obj in storage.list(f"{job}/"):
        if not obj.key.endswith(SUFFIX) or obj.size > MAX_RECORD_SIZE:
            continue
        raw = b"".join(storage.get(obj.key))
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                body = {}
        except ValueError:
            body = {}
        out.append(Record(obj.key, raw, body))
    return sorted(out, key=lambda r: (r.verified_at, r.key))


def write_record(storage: Storage, data_key: str, fields: dict[str, Any],
                 keys: KeyMaterial, previous: Record | None,
                 now: datetime | None = None) -> Record:
    """Store a new record (never over an existing key) chained to ``previous``.
    Raises ``StorageError``."""
    now = now or datetime.now(UTC)
    key = record_key(data_key, now)
    body = {"format": FORMAT, **fields, "verified_at": catalog.encode_time(now),
            "previous": previous.sha256 if previous else None,
            "previous_key": previous.key if previous else None}
    secret = mac_key(keys)
    body["mac"] = hmac.new(secret, _mac_input(body), hashlib.sha256).hexdigest() \
        if secret else ""
    raw = json.dumps(body, sort_keys=True, indent=1).encode() + b"\n"
    storage.put(key, [raw])
    return Record(key, raw, body)


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    broken_at: str | None = None
    why: str = ""


def check_chain(records: Sequence[Record], secret: bytes | None) -> ChainCheck:
    """Each record's ``previous`` equals the SHA-256 of the record it names, if that one
    is still stored (prune removes records with their backup); with ``secret`` every MAC
    verifies. Pure."""
    by_key = {r.key: r for r in records}
    for r in records:
        if not r.body or r.body.get("format") != FORMAT:
            return ChainCheck(False, r.key, "not a verification record dbcrate can read")
        if secret is not None and not r.mac_ok(secret):
            return ChainCheck(False, r.key, "its MAC does not verify")
        prev_key = r.body.get("previous_key")
        previous = by_key.get(prev_key) if isinstance(prev_key, str) else None
        if previous is not None and previous.sha256 != r.body.get("previous"):
            return ChainCheck(False, prev_key, "it changed after the next record chained it")
    return ChainCheck(True)


def history(records: Sequence[Record], days: int, today: date | None = None,
            ) -> list[dict[str, str]]:
    """One entry per UTC day, oldest first and ``today`` last: the day's worst result
    (fail > alarm > pass) or ``none``. Pure."""
    today = today or datetime.now(UTC).date()
    per_day: dict[str, list[str]] = {}
    for r in records:
        per_day.setdefault(r.verified_at[:10], []).append(r.result)
    out = []
    for i in range(days - 1, -1, -1):
        d = (today - timedelta(days=i)).isoformat()
        out.append({"date": d, "result": worst(per_day.get(d, []))})
    return out


def latest_passing(records: Sequence[Record], before_started: str,
                   secret: bytes | None) -> Record | None:
    """The newest record of pass or alarm for a backup started before ``before_started``
    (ISO time), whose MAC verifies when ``secret`` is given."""
    best: Record | None = None
    for r in records:
        if r.result not in ("pass", "alarm"):
            continue
        if str(r.body.get("backup_started_at", "")) >= before_started:
            continue
        if secret is not None and not r.mac_ok(secret):
            continue
        if best is None or str(r.body.get("backup_started_at", "")) > \
                str(best.body.get("backup_started_at", "")):
            best = r
    return best


def records_of(storage: Storage, data_key: str) -> list[str]:
    """The keys of the records of the backup at ``data_key`` (for prune). Raises
    ``StorageError``."""
    prefix = data_key.rsplit("/", 1)[0] + "/"
    return [o.key for o in storage.list(prefix)
            if o.key.startswith(data_key + ".") and o.key.endswith(SUFFIX)]
