"""The WAL archive on one target: its objects, its ``archive.json`` (system identifier and
segment size), and waiting for a file to be archived."""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from dbcrate.catalog import wal
from dbcrate.errors import DbcrateError, IntegrityError, ObjectNotFound, StorageError
from dbcrate.storage import Storage

#: archive.json is tiny; anything bigger is not ours
_MAX_ARCHIVE_JSON = 1 << 16


class WalConflict(IntegrityError):
    """Another file is archived under the name, or the WAL is another cluster's."""


class NotArchived(DbcrateError):
    """The WAL file is not in the archive (``wal-fetch`` exit 9)."""

    exit_code = 9


class ArchiveTimeout(StorageError):
    """The segment a base backup ends in was not archived in time."""


@dataclass(frozen=True)
class ArchiveInfo:
    """``{job}/wal/archive.json``."""

    system_identifier: str
    segment_size: int

    def encode(self) -> bytes:
        return (json.dumps({"format": 1, "system_identifier": self.system_identifier,
                            "segment_size": self.segment_size}, indent=2) + "\n").encode()


def read_archive_info(storage: Storage, job: str) -> ArchiveInfo | None:
    """The target's ``archive.json`` (None if there is none yet). Raises ``StorageError``,
    ``WalConflict`` if it is damaged."""
    key = wal.archive_json_key(job)
    try:
        body = b"".join(storage.get(key))
    except ObjectNotFound:
        return None
    try:
        if len(body) > _MAX_ARCHIVE_JSON:
            raise ValueError
        doc = json.loads(body)
        return ArchiveInfo(str(doc["system_identifier"]), int(doc["segment_size"]))
    except (ValueError, KeyError, TypeError):
        raise WalConflict(f"{storage.name}:{key} is damaged",
                          hint="restore it from another target, or remove it if the "
                          "archive is new") from None


def ensure_archive_info(storage: Storage, job: str, info: ArchiveInfo) -> None:
    """Write ``archive.json`` if missing; raise ``WalConflict`` naming both systems if the
    target's archive belongs to another cluster (or segment size). Raises ``StorageError``."""
    have = read_archive_info(storage, job)
    if have is None:
        storage.put(wal.archive_json_key(job), [info.encode()])
        return
    if have.system_identifier != info.system_identifier:
        raise WalConflict(
            f"the WAL archive of job {job} on target {storage.name} belongs to database "
            f"system {have.system_identifier}, this WAL to {info.system_identifier}",
            hint="a job archives one cluster: give the new cluster its own job (or move the "
            "old archive away)")
    if have.segment_size != info.segment_size:
        raise WalConflict(f"the WAL archive of job {job} on target {storage.name} has "
                          f"{have.segment_size}-byte segments, this WAL {info.segment_size}")


def copies(storage: Storage, job: str, name: str) -> list[wal.WalObject]:
    """The stored copies of WAL file ``name`` (normally zero or one). Raises
    ``StorageError``."""
    out = []
    for obj in storage.list(wal.name_prefix(job, name)):
        parsed = wal.parse_wal_key(obj.key, job, obj.size)
        if parsed is not None and parsed.name == name:
            out.append(parsed)
    return out


def objects(storage: Storage, job: str, timeline: str | None = None) -> list[wal.WalObject]:
    """Every WAL object of ``job`` on ``storage`` (of one timeline, 8 hex digits), in key
    order. Raises ``StorageError``."""
    prefix = wal.wal_prefix(job) + (f"{timeline}/" if timeline else "")
    out = []
    for obj in storage.list(prefix):
        parsed = wal.parse_wal_key(obj.key, job, obj.size, obj.modified)
        if parsed is not None:
            out.append(parsed)
    return out


def wait_archived(storages: Mapping[str, Storage], job: str, name: str, timeout: float,
                  how: str) -> None:
    """Wait until every storage holds WAL file ``name``. Raises ``ArchiveTimeout`` naming
    the targets still missing it and ``how`` (``archive_command``, the stream)."""
    deadline = time.monotonic() + timeout
    missing: Iterable[str] = list(storages)
    delay = 0.05
    while True:
        missing = [n for n in missing if not copies(storages[n], job, name)]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise ArchiveTimeout(
                f"segment {name}, where the base backup ends, was not archived to target "
                f"{', '.join(missing)} within {timeout:.0f}s",
                hint=f"check the server's {how} (its log says why it fails; "
                "`dbcrate wal check JOB`)")
        time.sleep(delay)
        delay = min(delay * 1.4, 1.0)
