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

from dbcrate import catalog_check as check
from dbcrate.catalog_check import Bad as _Bad
from dbcrate.errors import BackupNotFound, ManifestError, UsageError
from dbcrate.model import Manifest

#: the format new manifests are written in; FORMATS are those this dbcrate reads
FORMAT = 2
FORMATS = (1, 2)
MANIFEST_SUFFIX = ".manifest.json"
#: a manifest's SSHSIG signature object is at the manifest's key plus this
SIG_SUFFIX = ".sig"


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


def sig_key(manifest_key: str) -> str:
    """The key of the signature object of the manifest at ``manifest_key``."""
    return manifest_key + SIG_SUFFIX


def is_signature(key: str) -> bool:
    """A manifest's signature object (belongs to the backup; never a leftover)."""
    return key.endswith(MANIFEST_SUFFIX + SIG_SUFFIX)


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
    if manifest.format == 1:
        doc.pop("hmac")  # format 1 had no hmac member
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; naive times are taken as UTC. Raises ``ValueError``."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def mac_input(data: bytes) -> bytes:
    """What a format-2 manifest's ``hmac`` covers: the manifest's JSON object without
    its ``hmac`` member, re-serialised with sorted keys, no whitespace, UTF-8.

    Raises ``ManifestError`` if ``data`` is not a JSON object.
    """
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a JSON object")
    doc.pop("hmac", None)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode(data: bytes, *, where: str) -> Manifest:
    """Parse and validate a manifest: every field's type and value, and that its
    ``stages``, ``encryption``, ``recipients`` and ``key_id`` agree.

    Raises ``ManifestError`` naming ``where`` if it is not a manifest this dbcrate wrote
    (never another exception, whatever the JSON holds). Authenticity is checked by the
    caller (operations), not here.
    """
    try:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise _Bad(f"not JSON ({type(exc).__name__})") from None
        if not isinstance(doc, dict):
            raise _Bad("not a JSON object")
        fmt = doc.get("format")
        if isinstance(fmt, bool) or fmt not in FORMATS:
            raise ManifestError(
                f"manifest {where} has format {fmt!r}, this dbcrate reads "
                f"{', '.join(map(str, FORMATS))}",
                hint="upgrade dbcrate to read it",
            )
        return check.manifest(doc, fmt)
    except _Bad as exc:
        raise ManifestError(
            f"manifest {where} is not valid ({exc})",
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
    unique: dict[str, Manifest] = {}  # a backup on several targets counts once
    for m in manifests:
        if m.job == job and m.status == "complete":
            unique.setdefault(m.id, m)
    candidates = ordered(unique.values())
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
