"""Object keys: ``{job}/{YYYY}/{MM}/{DD}/{stamp}-{id}.{exts}``, the manifest beside the data
object under the data key plus ``.manifest.json``, its signature at ``+ .sig``. Pure
functions."""

from __future__ import annotations

import os
import re
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

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


#: what ``data_key`` puts in a backup's key: its start second and its id
_NAMED = re.compile(r"/(\d{8}T\d{6}Z)-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-"
                    r"[0-9a-f]{12})\.[^/]*$")


def key_name(key: str) -> tuple[datetime, str] | None:
    """The start second and id that ``data_key`` put in ``key`` (a data object's or its
    manifest's); None for a key of another form."""
    m = _NAMED.search(key)
    if m is None:
        return None
    try:
        return datetime.strptime(m.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC), m.group(2)
    except ValueError:
        return None


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
