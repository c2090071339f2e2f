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
from collections.abc import Sequence, Set
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
#: ``{job}/verify-head.json``: the newest record's key and SHA-256, MACed, overwritten by
#: every new record, so deleting the newest record is detected (docs/format.md)
HEAD_NAME = "verify-head.json"
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


def head_key(job: str) -> str:
    return f"{job}/{HEAD_NAME}"


def data_key_of(record: str) -> str:
    """The data key a record key was made from (``{data_key}.{time}.verify.json``)."""
    return record[: -len(SUFFIX)].rsplit(".", 1)[0]


def _mac(secret: bytes | None, body: dict[str, Any]) -> str:
    return hmac.new(secret, _mac_input(body), hashlib.sha256).hexdigest() if secret else ""


def write_record(storage: Storage, data_key: str, fields: dict[str, Any],
                 keys: KeyMaterial, previous: Record | None,
                 now: datetime | None = None) -> Record:
    """Store a new record (never over an existing key) chained to ``previous``, then
    point the job's head (``{job}/verify-head.json``) at it. Not atomic as a pair: a
    record whose head update failed is newer than the head, which ``check_head``
    accepts. Raises ``StorageError``."""
    now = now or datetime.now(UTC)
    key = record_key(data_key, now)
    job = str(fields.get("job") or data_key.split("/", 1)[0])
    body = {"format": FORMAT, **fields, "verified_at": catalog.encode_time(now),
            "previous": previous.sha256 if previous else None,
            "previous_key": previous.key if previous else None,
            "head_key": head_key(job)}
    secret = mac_key(keys)
    body["mac"] = _mac(secret, body)
    raw = json.dumps(body, sort_keys=True, indent=1).encode() + b"\n"
    storage.put(key, [raw])
    rec = Record(key, raw, body)
    head = {"format": FORMAT, "job": job, "record": key, "sha256": rec.sha256,
            "verified_at": body["verified_at"]}
    head["mac"] = _mac(secret, head)
    storage.put(head_key(job), [json.dumps(head, sort_keys=True, indent=1).encode() + b"\n"])
    return rec


@dataclass(frozen=True)
class ChainCheck:
    ok: bool
    broken_at: str | None = None
    why: str = ""


def check_chain(records: Sequence[Record], secret: bytes | None,
                manifest_keys: Set[str] | None = None) -> ChainCheck:
    """Each record's ``previous`` equals the SHA-256 of the record it names; a named
    record that is gone is accepted only if its backup is gone too (prune removes
    records with their backup; ``manifest_keys``: the manifests still stored, None: not
    checked); with ``secret`` every MAC verifies. Pure."""
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
        if previous is None and isinstance(prev_key, str) and manifest_keys is not None \
                and catalog.manifest_key(data_key_of(prev_key)) in manifest_keys:
            return ChainCheck(False, prev_key, "it was deleted while its backup is still "
                              "stored (the next record chains it)")
    return ChainCheck(True)


def read_head(storage: Storage, job: str) -> dict[str, Any] | None:
    """The job's head pointer on ``storage`` ({} if unreadable, None if absent). Raises
    ``StorageError`` other than not-found."""
    key = head_key(job)
    if not any(o.key == key for o in storage.list(f"{job}/{HEAD_NAME}")):
        return None
    try:
        body = json.loads(b"".join(storage.get(key)))
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def check_head(head: dict[str, Any] | None, records: Sequence[Record], secret: bytes | None,
               manifest_keys: Set[str]) -> ChainCheck:
    """The head pointer against the records: it must exist once any record says it is
    kept (``head_key``), verify (MAC, with ``secret``) and name a stored record with that
    SHA-256 -- unless that record's backup was pruned. Records newer than the head are
    accepted (a head update that did not land). Pure."""
    job_head = next((str(r.body["head_key"]) for r in records if r.body.get("head_key")), None)
    if head is None:
        if job_head is None:
            return ChainCheck(True)
        return ChainCheck(False, job_head, "the head pointer is missing (deleted?)")
    where = job_head or HEAD_NAME
    if head.get("format") != FORMAT or not isinstance(head.get("record"), str):
        return ChainCheck(False, where, "not a head pointer dbcrate can read")
    if secret is not None and not hmac.compare_digest(_mac(secret, head),
                                                      str(head.get("mac", ""))):
        return ChainCheck(False, where, "its MAC does not verify")
    named = str(head["record"])
    found = next((r for r in records if r.key == named), None)
    if found is None:
        if catalog.manifest_key(data_key_of(named)) in manifest_keys:
            return ChainCheck(False, named, "the newest record (named by the head pointer) "
                              "was deleted while its backup is still stored")
        return ChainCheck(True)
    if found.sha256 != head.get("sha256"):
        return ChainCheck(False, named, "it differs from what the head pointer names")
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


def check_known(known: Sequence[tuple[str, str]], records: Sequence[Record],
                manifest_keys: Set[str]) -> ChainCheck:
    """Records this host wrote (``(key, sha256)`` from its state DB) against the stored
    ones: each must still be stored unchanged unless its backup was pruned. This catches
    what storage access alone can do undetected elsewhere: an older, validly MACed head
    put back with the newer records deleted. Pure."""
    by_key = {r.key: r for r in records}
    for key, sha in known:
        r = by_key.get(key)
        if r is None and catalog.manifest_key(data_key_of(key)) in manifest_keys:
            return ChainCheck(False, key, "a record this host wrote is missing while its "
                              "backup is still stored")
        if r is not None and r.sha256 != sha:
            return ChainCheck(False, key, "a record this host wrote was changed")
    return ChainCheck(True)
