"""Base backups (``mode = "physical"`` jobs): the engine ``run_backup`` streams, and the
step before its manifest: wait until the segment holding the stop LSN is archived on
every target, check the archive is this cluster's, and record the base's metadata."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, cast

from dbcrate.catalog import wal
from dbcrate.config import JobConfig
from dbcrate.config.pitr import parse_pitr
from dbcrate.engines import Connection, Engine
from dbcrate.model import Manifest
from dbcrate.operations.pitr.archive import ArchiveInfo, ensure_archive_info, wait_archived
from dbcrate.storage import Storage

if TYPE_CHECKING:
    from dbcrate.engines.postgres.physical.engine import PhysicalEngine

log = logging.getLogger("dbcrate.pitr")

#: seconds to wait for the stop segment to be archived ($DBCRATE_ARCHIVE_WAIT overrides)
ARCHIVE_WAIT = 120.0


def open_physical(job: JobConfig) -> PhysicalEngine:
    """The base-backup engine of ``job``. Raises ``ConfigError``."""
    from dbcrate.engines.postgres.physical.engine import PhysicalEngine  # psycopg: lazily

    parse_pitr(job.options, where=f"jobs.{job.name}", source=job.source)
    return PhysicalEngine(Connection(job.url, job.password, job.options))


def complete(job: JobConfig, engine: Engine, storages: Mapping[str, Storage],
             manifest: Manifest, state_dir: Path | None = None) -> Manifest:
    """The base backup's manifest, once its stop segment is archived on every target in
    ``storages`` (those that took the base). Raises ``ArchiveTimeout`` (naming
    archive_command or the stream), ``WalConflict`` (the archive is another cluster's),
    ``DumpFailed`` (the stream lacked its metadata), ``StorageError``."""
    info = cast("PhysicalEngine", engine).base_info()
    seg = wal.segment_name(info.timeline,
                           wal.segment_no(wal.parse_lsn(info.stop_lsn), info.segment_size),
                           info.segment_size)
    for storage in storages.values():
        ensure_archive_info(storage, job.name,
                            ArchiveInfo(info.system_identifier, info.segment_size))
    settings = parse_pitr(job.options, where=f"jobs.{job.name}", source=job.source)
    how = "archive_command" if settings.archive == "command" else \
        f"WAL stream (pg_receivewal of the agent, slot dbcrate_{job.name})"
    timeout = float(os.environ.get("DBCRATE_ARCHIVE_WAIT", ARCHIVE_WAIT))
    log.info("waiting for %s (stop LSN %s) to be archived", seg, info.stop_lsn)
    wait_archived(storages, job.name, seg, timeout, how)
    if state_dir is not None and state_dir.is_dir():
        keep_backup_manifest(state_dir, job.name, info.manifest)
    return replace(manifest, kind="base", extra={**manifest.extra, **info.extra()})


def keep_backup_manifest(state_dir: Path, job: str, body: bytes) -> None:
    """Keep the newest base's ``backup_manifest`` at ``STATE/pitr/JOB.backup_manifest``
    (for incremental backups: the next base is taken against it). Atomic (rename); a
    failure is logged, never fatal."""
    directory = state_dir / "pitr"
    try:
        directory.mkdir(mode=0o700, exist_ok=True)
        tmp = directory / f".{job}.backup_manifest.tmp"
        tmp.write_bytes(body)
        tmp.chmod(0o600)
        tmp.replace(directory / f"{job}.backup_manifest")
    except OSError as exc:
        log.warning("cannot keep the backup_manifest of %s in %s: %s", job, directory,
                    exc.strerror or exc)
