"""Back up one job: dump -> compress -> encrypt -> every target, manifest last."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dbcrate import __version__, catalog
from dbcrate.config import Config, JobConfig
from dbcrate.engines import Connection, open_engine
from dbcrate.errors import DbcrateError, StorageError
from dbcrate.model import Manifest, ObjectInfo, StoredCopy
from dbcrate.operations.fanout import Tracked, fanout
from dbcrate.operations.pipeline import encode_plan
from dbcrate.operations.progress import Counter, Progress, Silent
from dbcrate.storage import Storage, open_target
from dbcrate.streams import HashStage, Stage, apply

log = logging.getLogger("dbcrate.backup")


@dataclass
class BackupResult:
    """What one job's backup did, per target. ``ok`` only if every target has it."""

    job: str
    manifest: Manifest | None = None
    copies: list[StoredCopy] = field(default_factory=list)
    failures: dict[str, DbcrateError] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return self.manifest is not None and not self.failures


def run_backup(config: Config, job: JobConfig, progress: Progress | None = None) -> BackupResult:
    """Back up ``job`` to each of its targets.

    A data object becomes a backup only when its manifest is written, last. If the dump
    or a stage fails, no target gets a manifest or an object at a final key and the error
    propagates (``DumpFailed``, ``StageFailed``, ``DatabaseError`` ...). If a single target
    fails, the others still complete; the failure is recorded in the result.
    """
    progress = progress or Silent()
    storages = {name: open_target(config.target(name)) for name in job.targets}
    engine = open_engine(job.engine, Connection(job.url, job.password, job.options))
    info = engine.probe()
    plan = encode_plan(job)

    started = datetime.now(UTC)
    backup_id = catalog.new_id(started)
    key = catalog.data_key(job.name, started, backup_id, (engine.ext, *plan.exts))
    plain, stored = HashStage(), HashStage()
    dumped = Counter(lambda n: progress.update(n, stored.size))
    stages: list[Stage] = [dumped, plain, *(c.encoder() for c in plan.codecs), stored]
    progress.start(f"{job.name}: {info.tool} {info.tool_version} -> {', '.join(storages)}")
    log.info("backing up %s (%s %s) to %s as %s", job.name, job.engine, info.server_version,
             ", ".join(storages), key)

    dump = engine.dump()
    source = Tracked(apply(dump, stages))
    consumers = [_uploader(s, key) for s in storages.values()]
    try:
        outcomes = fanout(source, consumers)
    finally:
        _close(dump)  # if every upload failed early, stop the dump tool now
        progress.finish()
    finished = datetime.now(UTC)

    manifest = Manifest(
        format=catalog.FORMAT, id=backup_id, job=job.name, engine=job.engine,
        server_version=info.server_version, tool=info.tool, tool_version=info.tool_version,
        stages=plan.stages, started_at=started, finished_at=finished,
        plaintext=plain.digest(), stored=stored.digest(), encryption=plan.encryption,
        recipients=plan.recipients, key_id=plan.key_id, dbcrate_version=__version__,
        status="complete", data_key=key,
    )
    result = BackupResult(job=job.name, manifest=manifest)
    body = catalog.encode(manifest)
    for (name, storage), outcome in zip(storages.items(), outcomes, strict=True):
        if isinstance(outcome, BaseException):
            result.failures[name] = _as_error(outcome, name)
            continue
        try:
            storage.put(catalog.manifest_key(key), [body])
        except DbcrateError as exc:
            result.failures[name] = exc
            _discard(storage, key)
            continue
        result.copies.append(StoredCopy(target=name, key=key, size=outcome.size))
    if not result.copies:
        result.manifest = None
    return result


def _uploader(storage: Storage, key: str) -> Callable[[Iterator[bytes]], ObjectInfo]:
    def upload(chunks: Iterator[bytes]) -> ObjectInfo:
        return storage.put(key, chunks)

    return upload


def _close(chunks: Iterator[bytes]) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        close()


def _as_error(exc: BaseException, target: str) -> DbcrateError:
    if isinstance(exc, DbcrateError):
        return exc
    return StorageError(f"target {target}: upload failed: {type(exc).__name__}: {exc}")


def _discard(storage: Storage, key: str) -> None:
    """Best-effort removal of a data object whose manifest could not be written."""
    try:
        storage.delete(key)
    except DbcrateError as exc:
        log.warning("could not remove %s after a failed manifest write: %s", key, exc)
