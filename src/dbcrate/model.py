"""Frozen value types shared by every layer."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class ObjectInfo:
    """One object in a storage target. ``key`` is relative to the target's root."""

    key: str
    size: int
    modified: datetime | None = None


@dataclass(frozen=True)
class EngineInfo:
    """What ``Engine.probe()`` learns about a server and the tool that will dump it."""

    engine: str
    server_version: str
    tool: str = ""
    tool_version: str = ""
    database: str = ""
    #: why the user dbcrate connects as is a superuser ("" when it is not, or unknown);
    #: ``backup`` warns (see docs/engines/*.md, "Least privilege"). Not in manifests.
    superuser: str = ""


@dataclass(frozen=True)
class Digest:
    """Size and SHA-256 (hex) of a byte stream. ``sha256`` is None when only the size is
    recorded: the plaintext of a format-3 backup whose first stage is zstd (its frames
    carry their own content checksum; docs/format.md, "What a restore verifies")."""

    size: int
    sha256: str | None


@dataclass(frozen=True)
class StoredCopy:
    """Where one target holds a backup's data object."""

    target: str
    key: str
    size: int


@dataclass(frozen=True)
class PartRecord:
    """An extra object of a backup (e.g. PostgreSQL globals), stored with the same codecs."""

    name: str
    key: str
    plaintext: Digest
    stored: Digest


@dataclass(frozen=True)
class Manifest:
    """A backup's self-description, stored beside its data. Never holds a secret."""

    format: int
    id: str
    job: str
    engine: str
    server_version: str
    tool: str
    tool_version: str
    stages: tuple[str, ...]
    started_at: datetime
    finished_at: datetime
    plaintext: Digest
    stored: Digest
    encryption: str
    recipients: tuple[str, ...] = ()
    key_id: str = ""
    dbcrate_version: str = ""
    status: str = "complete"
    data_key: str = ""
    extra: dict[str, str] = field(default_factory=dict)
    parts: tuple[PartRecord, ...] = ()
    #: format >= 2, aes-256-gcm jobs: HMAC-SHA256 of the manifest (see docs/format.md)
    hmac: str = ""
    #: ``dump`` (an engine's native dump) or ``base`` (a PostgreSQL base backup, its
    #: timeline, LSNs, system identifier and segment size in ``extra``; docs/pitr.md)
    kind: str = "dump"

    def part(self, name: str) -> PartRecord | None:
        """The extra part called ``name``, if the backup has one."""
        return next((p for p in self.parts if p.name == name), None)
