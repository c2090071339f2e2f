"""Field-by-field validation of a decoded manifest document (used by ``catalog.decode``).

Every field's JSON type and value is checked; nothing is coerced (``str(5)`` would turn
a damaged manifest into a plausible one). Pure functions; errors are ``Bad`` (the
caller turns them into ``ManifestError`` naming the manifest).
"""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Any

from dbcrate.config import COMPRESSIONS, ENCRYPTIONS, ENGINES
from dbcrate.model import Digest, Manifest, PartRecord

_HEX64 = re.compile(r"[0-9a-f]{64}")
_HEX16 = re.compile(r"[0-9a-f]{16}")
#: stage names a manifest may list (the codec registry's names)
COMPRESSION_STAGES = frozenset(COMPRESSIONS)
ENCRYPTION_STAGES = frozenset(e for e in ENCRYPTIONS if e != "none")
STAGES = COMPRESSION_STAGES | ENCRYPTION_STAGES
#: what a backup is: a native dump, or a PostgreSQL base backup (docs/pitr.md)
KINDS = ("dump", "base")


class Bad(Exception):
    """One field of a manifest is invalid (message names the field)."""


def _str(doc: dict[str, Any], key: str, default: str | None = None,
         *, empty: bool = False) -> str:
    if key not in doc:
        if default is None:
            raise Bad(f"{key} is missing")
        return default
    value = doc[key]
    if not isinstance(value, str):
        raise Bad(f"{key} must be a string, not {type(value).__name__}")
    if not value and not empty:
        raise Bad(f"{key} is empty")
    return value


def _list(doc: dict[str, Any], key: str, default: list[Any] | None = None) -> list[Any]:
    if key not in doc and default is not None:
        return default
    value = doc.get(key)
    if not isinstance(value, list):
        raise Bad(f"{key} must be a list, not {type(value).__name__}")
    return value


def _time(doc: dict[str, Any], key: str) -> datetime:
    text = _str(doc, key)
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise Bad(f"{key} is not an ISO 8601 time") from None
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def _digest(value: Any, key: str, *, nullable: bool = False) -> Digest:
    """A ``{"size", "sha256"}`` object; ``sha256`` may be null only if ``nullable``."""
    if not isinstance(value, dict) or set(value) != {"size", "sha256"}:
        raise Bad(f"{key} must be an object with exactly size and sha256")
    size, sha = value["size"], value["sha256"]
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise Bad(f"{key}.size must be an integer >= 0")
    if sha is None and nullable:
        return Digest(size, None)
    if not isinstance(sha, str) or not _HEX64.fullmatch(sha):
        raise Bad(f"{key}.sha256 must be 64 lowercase hex digits")
    return Digest(size, sha)


def _object_key(value: str, key: str, job: str) -> str:
    parts = value.split("/")
    if not value.startswith(f"{job}/") or any(p in ("", ".", "..") for p in parts):
        raise Bad(f"{key} must be a key under {job}/")
    return value


def _stages(doc: dict[str, Any], encryption: str) -> tuple[str, ...]:
    stages = _list(doc, "stages")
    for s in stages:
        if not isinstance(s, str) or s not in STAGES:
            raise Bad(f"stages holds an unknown stage {s!r}"[:120])
    enc = [s for s in stages if s in ENCRYPTION_STAGES]
    comp = [s for s in stages if s in COMPRESSION_STAGES]
    if len(comp) > 1 or len(enc) > 1 or (enc and stages[-1] != enc[0]):
        raise Bad("stages must be at most one compression then at most one encryption")
    if (enc[0] if enc else "none") != encryption:
        raise Bad(f"stages {stages} disagree with encryption {encryption!r}")
    return tuple(stages)


def _recipients(doc: dict[str, Any], encryption: str) -> tuple[str, ...]:
    recipients = _list(doc, "recipients", [])
    if not all(isinstance(r, str) and _HEX16.fullmatch(r) for r in recipients):
        raise Bad("recipients must be 16-hex-digit fingerprints")
    if (encryption == "age") != bool(recipients):
        raise Bad(f"recipients disagree with encryption {encryption!r}")
    return tuple(recipients)


def _parts(doc: dict[str, Any], job: str, base: str) -> tuple[PartRecord, ...]:
    """The parts; each key must be ``{base}-{name}.…`` (its own backup's objects only, so
    prune deleting a backup can never delete another backup's object)."""
    out = []
    for i, p in enumerate(_list(doc, "parts", [])):
        if not isinstance(p, dict):
            raise Bad(f"parts[{i}] must be an object")
        name = _str(p, "name")
        key = _object_key(_str(p, "key"), f"parts[{i}].key", job)
        if not key.startswith(f"{base}-{name}."):
            raise Bad(f"parts[{i}].key is not an object of this backup")
        out.append(PartRecord(
            name=name, key=key,
            plaintext=_digest(p.get("plaintext"), f"parts[{i}].plaintext"),
            stored=_digest(p.get("stored"), f"parts[{i}].stored"),
        ))
    if len({p.name for p in out}) != len(out):
        raise Bad("parts has duplicate names")
    return tuple(out)


def _plaintext(doc: dict[str, Any], fmt: int, stages: tuple[str, ...]) -> Digest:
    """The backup's ``plaintext`` digest. Its ``sha256`` may be null from format 3 on, and
    only when the first stage is zstd (its frames carry a content checksum of the
    plaintext; docs/format.md); formats 1 and 2 always record it."""
    value = doc.get("plaintext")
    null = isinstance(value, dict) and "sha256" in value and value["sha256"] is None
    if null and fmt >= 3 and stages[:1] != ("zstd",):
        raise Bad("plaintext.sha256 is null, but the first stage is not zstd (only zstd "
                  "frames carry a content checksum)")
    return _digest(value, "plaintext", nullable=fmt >= 3)


def manifest(doc: dict[str, Any], fmt: int) -> Manifest:
    """Build the ``Manifest`` of a format-``fmt`` document. Raises ``Bad``."""
    backup_id = _str(doc, "id")
    try:
        if str(uuid.UUID(backup_id)) != backup_id:
            raise ValueError
    except ValueError:
        raise Bad("id is not a lowercase UUID") from None
    job = _str(doc, "job")
    engine = _str(doc, "engine")
    if engine not in ENGINES:
        raise Bad(f"engine {engine[:40]!r} is unknown")
    encryption = _str(doc, "encryption")
    if encryption not in ENCRYPTIONS:
        raise Bad(f"encryption {encryption[:40]!r} is unknown")
    key_id = _str(doc, "key_id", "", empty=True)
    if key_id and not _HEX16.fullmatch(key_id):
        raise Bad("key_id must be 16 hex digits")
    if (encryption == "aes-256-gcm") != bool(key_id):
        raise Bad(f"key_id disagrees with encryption {encryption!r}")
    extra = doc.get("extra", {})
    if not isinstance(extra, dict) or not all(isinstance(v, str) for v in extra.values()):
        raise Bad("extra must be an object of strings")
    tag = _str(doc, "hmac", empty=True) if fmt >= 2 else ""
    if tag and not _HEX64.fullmatch(tag):
        raise Bad("hmac must be 64 lowercase hex digits")
    data_key = _object_key(_str(doc, "data_key"), "data_key", job)
    if f"-{backup_id}." not in data_key.rsplit("/", 1)[-1]:
        raise Bad("data_key does not name this backup's id")
    base = data_key[:data_key.rindex(f"-{backup_id}.") + len(backup_id) + 1]
    kind = _str(doc, "kind", "dump")
    if kind not in KINDS:
        raise Bad(f"kind {kind[:40]!r} is unknown")
    stages = _stages(doc, encryption)
    return Manifest(
        format=fmt, id=backup_id, job=job, engine=engine,
        server_version=_str(doc, "server_version", empty=True),
        tool=_str(doc, "tool", empty=True), tool_version=_str(doc, "tool_version", empty=True),
        stages=stages, started_at=_time(doc, "started_at"),
        finished_at=_time(doc, "finished_at"),
        plaintext=_plaintext(doc, fmt, stages),
        stored=_digest(doc.get("stored"), "stored"), encryption=encryption,
        recipients=_recipients(doc, encryption), key_id=key_id,
        dbcrate_version=_str(doc, "dbcrate_version", "", empty=True),
        status=_str(doc, "status", "complete"),
        data_key=data_key, extra=dict(extra), parts=_parts(doc, job, base), hmac=tag,
        kind=kind,
    )
