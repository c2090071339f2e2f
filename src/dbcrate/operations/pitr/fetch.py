"""Reading WAL back: find a file's copy on the job's targets, decode it, check its digest
(the plaintext SHA-256 in its key) and, for a segment, the system identifier in its page
header against ``archive.json``. ``wal-fetch`` and the PITR restore's prefetch share it."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from dbcrate import codecs
from dbcrate.catalog import wal
from dbcrate.config import JobConfig
from dbcrate.engines.postgres.physical.walpage import read_header
from dbcrate.errors import (
    DbcrateError,
    DigestMismatch,
    DowngradeRefused,
    StorageError,
    TruncatedData,
    UsageError,
)
from dbcrate.operations.pipeline import KeyMaterial
from dbcrate.operations.pitr.archive import (
    ArchiveInfo,
    NotArchived,
    WalConflict,
    copies,
    read_archive_info,
)
from dbcrate.storage import Storage
from dbcrate.streams import Stage, apply

#: object key extension -> codec name
_EXT_CODECS = {"zst": "zstd", "gz": "gzip", "age": "age", "aes": "aes-256-gcm"}
_ENCRYPTING = ("age", "aes-256-gcm")


def wal_decoders(key: str, keys: KeyMaterial) -> list[Stage]:
    """Decoders for the WAL object at ``key`` (from its extensions), last codec first.
    Raises ``UsageError`` when its key material was not given."""
    exts = key.rsplit("/", 1)[-1].split("-", 1)[-1].split(".")[1:]
    stages: list[Stage] = []
    for ext in reversed(exts):
        name = _EXT_CODECS.get(ext)
        if name is None:
            raise WalConflict(f"WAL object {key} has an unknown extension .{ext}")
        if name == "age":
            if not keys.identities:
                raise UsageError(f"WAL object {key} is encrypted with age",
                                 hint="pass the identity file: --identity FILE")
            stages.append(codecs.make("age", identities=keys.identities).decoder())
        elif name == "aes-256-gcm":
            if keys.aes_key is None:
                raise UsageError(f"WAL object {key} is encrypted with aes-256-gcm",
                                 hint="set encryption_key in the config")
            stages.append(codecs.make(name, key=keys.aes_key).decoder())
        else:
            stages.append(codecs.make(name).decoder())
    return stages


def read_wal(storage: Storage, job: JobConfig, obj: wal.WalObject, keys: KeyMaterial,
             info: ArchiveInfo | None) -> bytes:
    """The plaintext of ``obj``, checked. Raises ``DigestMismatch``/``TruncatedData``/
    ``CorruptedData`` (naming target and key), ``DowngradeRefused`` (unencrypted while
    the job encrypts), ``WalConflict`` (another system's segment), ``DecryptionError``,
    ``StorageError``."""
    where = f"WAL object {storage.name}:{obj.key}"
    if job.encryption != "none" and not any(
            obj.key.endswith(f".{e}") for e in ("age", "aes")):
        raise DowngradeRefused(f"{where} is not encrypted, but job {job.name} encrypts",
                               hint="someone else wrote it; remove it or restore it from "
                               "another target")
    try:
        data = b"".join(apply(storage.get(obj.key), wal_decoders(obj.key, keys)))
    except (DigestMismatch, TruncatedData) as exc:
        raise type(exc)(f"{where}: {exc.message}") from None
    except DbcrateError as exc:
        if isinstance(exc, StorageError | UsageError):
            raise
        exc.message = f"{where}: {exc.message}"
        exc.args = (exc.message,)
        raise
    sha = hashlib.sha256(data).hexdigest()
    if sha != obj.sha256:
        raise DigestMismatch(f"{where} is damaged: its plaintext has sha256 {sha[:16]}..., "
                             f"its key says {obj.sha256[:16]}... ({len(data)} bytes)",
                             hint="restore it from another target (`dbcrate wal verify`)")
    if (obj.is_segment or wal.PARTIAL.fullmatch(obj.name)) and info is not None:
        header = read_header(data)
        if header is None or str(header.system_identifier) != info.system_identifier or \
                len(data) != info.segment_size:
            raise WalConflict(f"{where} is not a segment of database system "
                              f"{info.system_identifier}")
    return data


def locate(storages: Mapping[str, Storage], job: str,
           name: str) -> tuple[Storage, wal.WalObject]:
    """The first target's copy of WAL file ``name``. Raises ``NotArchived``, ``WalConflict``
    (two different copies on one target), ``StorageError`` (when no target could be
    read)."""
    failed: list[StorageError] = []
    for storage in storages.values():
        try:
            found = copies(storage, job, name)
        except StorageError as exc:
            failed.append(exc)
            continue
        if len({c.sha256 for c in found}) > 1:
            raise WalConflict(f"target {storage.name} holds conflicting copies of {name}",
                              hint="`dbcrate wal verify JOB` lists them")
        if found:
            return storage, found[0]
    if failed and len(failed) == len(storages):
        raise failed[0]
    raise NotArchived(f"{name} is not in the WAL archive of job {job}")


def fetch_to(storages: Mapping[str, Storage], job: JobConfig, name: str, dest: Path,
             keys: KeyMaterial) -> None:
    """``wal-fetch``: write WAL file ``name`` to ``dest`` (atomic rename in its directory).
    Raises ``NotArchived`` or the errors of ``read_wal``."""
    storage, obj = locate(storages, job.name, name)
    info = read_archive_info(storage, job.name)
    data = read_wal(storage, job, obj, keys, info)
    fd, tmp = tempfile.mkstemp(prefix=".dbcrate-wal-", dir=dest.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        Path(tmp).replace(dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
