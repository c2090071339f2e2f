"""The catalog: object keys, manifest encoding and backup selection. Pure functions.

A backup exists only once its manifest exists; the manifest is stored beside the data
object under the data key plus ``.manifest.json``. Storage I/O lives in operations/.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from dbcrate.errors import BackupNotFound, ManifestError, UsageError
from dbcrate.model import Digest, Manifest, PartRecord

FORMAT = 1
MANIFEST_SUFFIX = ".manifest.json"


def new_id(now: datetime | None = None) -> str:
    """A UUIDv7 (RFC 9562): 48-bit unix milliseconds, then random bits; sorts by time."""
    ms = int((now.timestamp() if now else time.time()) * 1000)
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80 | 0x7 << 76 | (rand >> 68 & 0xFFF) << 64
    value |= 0b10 << 62 | (rand & ((1 << 62) - 1))
    return str(uuid.UUID(int=value))


def stamp(when: datetime) -> str:
    """``20261121T030000Z``: the UTC time part of an object key."""
    return when.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def data_key(
    job: str, started_at: datetime, backup_id: str, exts: Sequence[str], part: str = ""
) -> str:
    """``{job}/{YYYY}/{MM}/{DD}/{stamp}-{id}.{ext}``, relative to the target's root; an
    extra part's object is ``{stamp}-{id}-{part}.{ext}``."""
    utc = started_at.astimezone(UTC)
    suffix = ".".join(e for e in exts if e)
    name = f"{backup_id}-{part}" if part else backup_id
    return f"{job}/{utc:%Y/%m/%d}/{stamp(utc)}-{name}.{suffix}"


def manifest_key(key: str) -> str:
    """The manifest's key for the data object at ``key``."""
    return key + MANIFEST_SUFFIX


def is_manifest(key: str) -> bool:
    return key.endswith(MANIFEST_SUFFIX)


def encode_time(value: datetime) -> str:
    """``2026-11-21T03:00:00.123456Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode(manifest: Manifest) -> bytes:
    """The manifest as canonical, pretty JSON (UTF-8)."""
    doc: dict[str, Any] = asdict(manifest)
    doc["started_at"] = encode_time(manifest.started_at)
    doc["finished_at"] = encode_time(manifest.finished_at)
    doc["stages"] = list(manifest.stages)
    doc["recipients"] = list(manifest.recipients)
    doc["parts"] = [asdict(p) for p in manifest.parts]
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; naive times are taken as UTC. Raises ``ValueError``."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def decode(data: bytes, *, where: str) -> Manifest:
    """Parse a manifest. Raises ``ManifestError`` naming ``where`` if it is not one."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict):
            raise TypeError("not an object")
        if doc.get("format") != FORMAT:
            raise ManifestError(
                f"manifest {where} has format {doc.get('format')!r}, this dbcrate reads {FORMAT}",
                hint="upgrade dbcrate to read it",
            )
        return Manifest(
            format=FORMAT,
            id=str(doc["id"]),
            job=str(doc["job"]),
            engine=str(doc["engine"]),
            server_version=str(doc["server_version"]),
            tool=str(doc["tool"]),
            tool_version=str(doc["tool_version"]),
            stages=tuple(str(s) for s in doc["stages"]),
            started_at=parse_time(doc["started_at"]),
            finished_at=parse_time(doc["finished_at"]),
            plaintext=Digest(**doc["plaintext"]),
            stored=Digest(**doc["stored"]),
            encryption=str(doc["encryption"]),
            recipients=tuple(doc.get("recipients", ())),
            key_id=str(doc.get("key_id", "")),
            dbcrate_version=str(doc.get("dbcrate_version", "")),
            status=str(doc.get("status", "complete")),
            data_key=str(doc["data_key"]),
            extra={str(k): str(v) for k, v in doc.get("extra", {}).items()},
            parts=tuple(
                PartRecord(
                    name=str(p["name"]), key=str(p["key"]), plaintext=Digest(**p["plaintext"]),
                    stored=Digest(**p["stored"]),
                )
                for p in doc.get("parts", ())
            ),
        )
    except ManifestError:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise ManifestError(
            f"manifest {where} is not valid ({type(exc).__name__}: {exc})",
            hint="it may have been edited or damaged; other backups are unaffected",
        ) from None


def ordered(manifests: Iterable[Manifest]) -> list[Manifest]:
    """Oldest first, ties broken by id (UUIDv7 sorts by time)."""
    return sorted(manifests, key=lambda m: (m.started_at, m.id))


def select(
    manifests: Iterable[Manifest],
    job: str,
    *,
    latest: bool = False,
    at: datetime | None = None,
    backup_id: str | None = None,
) -> Manifest:
    """Pick one complete backup of ``job``: the newest, the newest started at or before
    ``at``, or the one whose id is (or uniquely starts with) ``backup_id``.

    Raises ``UsageError`` unless exactly one selector is given; ``BackupNotFound``.
    """
    if sum((latest, at is not None, backup_id is not None)) != 1:
        raise UsageError("choose exactly one of --latest, --at TIME or --id ID")
    candidates = ordered(m for m in manifests if m.job == job and m.status == "complete")
    if not candidates:
        raise BackupNotFound(f"no backups of job {job!r} found")
    if latest:
        return candidates[-1]
    if at is not None:
        before = [m for m in candidates if m.started_at <= at]
        if not before:
            raise BackupNotFound(
                f"no backup of job {job!r} started at or before {encode_time(at)}; "
                f"the oldest started at {encode_time(candidates[0].started_at)}"
            )
        return before[-1]
    assert backup_id is not None
    matches = [m for m in candidates if m.id == backup_id or m.id.startswith(backup_id)]
    if len(matches) == 1 and (matches[0].id == backup_id or len(backup_id) >= 8):
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"id {backup_id!r} matches {len(matches)} backups; give more of it")
    raise BackupNotFound(f"no backup of job {job!r} has id {backup_id!r}")
