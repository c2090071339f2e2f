"""Back up one job: dump -> compress -> encrypt -> every target, manifest last."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from dbcrate import __version__, catalog, interrupt, signing
from dbcrate.config import Config, JobConfig
from dbcrate.engines import Connection, open_counter, open_engine
from dbcrate.errors import DbcrateError, StorageError
from dbcrate.model import Digest, Manifest, ObjectInfo, PartRecord, StoredCopy
from dbcrate.operations import leftovers
from dbcrate.operations.authn import sig_key
from dbcrate.operations.fanout import Tracked, fanout
from dbcrate.operations.pipeline import EncodePlan, encode_plan
from dbcrate.operations.progress import Counter, Progress, Silent
from dbcrate.storage import Storage, open_target
from dbcrate.streams import HashStage, Stage, apply, threaded

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

    The engine's extra parts (e.g. PostgreSQL globals) are stored first, then the main
    dump; a backup exists only once its manifest is written, last. If a dump or a stage
    fails, no target gets a manifest or an object at a final key and the error propagates
    (``DumpFailed``, ``CorruptedData``, ``DatabaseError`` ...). If a single target fails,
    the others still complete; the failure is recorded in the result.
    """
    progress = progress or Silent()
    interrupt.doing(f"backup of {job.name}")
    storages = {name: open_target(config.target(name)) for name in job.targets}
    for storage in storages.values():
        leftovers.sweep_quietly(storage, job.name)  # what killed runs left behind
    engine = open_engine(job.engine, Connection(job.url, job.password, job.options))
    info = engine.probe()
    if info.superuser:
        log.warning("job %s backs up as a superuser (%s); a least-privilege role is enough: "
                    "see `dbcrate grants %s`", job.name, info.superuser, job.name)
    plan = encode_plan(job)
    signer = _signer(job)  # a bad signing_key_file fails before anything is dumped

    started = datetime.now(UTC)
    backup_id = catalog.new_id(started)
    key = catalog.data_key(job.name, started, backup_id, (engine.ext, *plan.exts))
    log.info("backing up %s (%s %s) to %s as %s", job.name, job.engine, info.server_version,
             ", ".join(storages), key)
    failures: dict[str, DbcrateError] = {}
    written: dict[str, list[str]] = {name: [] for name in storages}

    parts: list[PartRecord] = []
    for part in engine.extra_parts():
        part_key = catalog.data_key(job.name, started, backup_id, (part.ext, *plan.exts),
                                    part=part.name)
        progress.start(f"{job.name} {part.name}")
        plain_d, stored_d = _store(engine.dump_part(part.name), part_key, plan, storages,
                                   failures, written, progress)
        parts.append(PartRecord(part.name, part_key, plain_d, stored_d))

    progress.start(f"{job.name}: {info.tool} {info.tool_version} -> {', '.join(storages)}")
    counter = open_counter(job.engine)  # backup-time row counts, as the dump streams
    dump = engine.dump() if counter is None else counter(engine.dump())
    plain, stored = _store(dump, key, plan, storages, failures, written, progress)
    stats = counter.stats() if counter is not None else None
    if stats is not None:  # written after the main dump, encrypted like it
        stats_key = catalog.data_key(job.name, started, backup_id, ("json", *plan.exts),
                                     part="stats")
        parts.append(PartRecord("stats", stats_key, *_store(
            iter([stats]), stats_key, plan, storages, failures, written, Silent())))
    finished = datetime.now(UTC)

    manifest = Manifest(
        format=catalog.FORMAT, id=backup_id, job=job.name, engine=job.engine,
        server_version=info.server_version, tool=info.tool, tool_version=info.tool_version,
        stages=plan.stages, started_at=started, finished_at=finished,
        plaintext=plain, stored=stored, encryption=plan.encryption,
        recipients=plan.recipients, key_id=plan.key_id, dbcrate_version=__version__,
        status="complete", data_key=key, parts=tuple(parts),
    )
    if job.encryption == "aes-256-gcm" and job.encryption_key is not None:
        tag = signing.mac(signing.mac_key(job.encryption_key),
                          catalog.mac_input(catalog.encode(manifest)))
        manifest = replace(manifest, hmac=tag)
    result = BackupResult(job=job.name, manifest=manifest, failures=failures)
    body = catalog.encode(manifest)
    mkey = catalog.manifest_key(key)
    sig = signing.sign(signer, body) if signer is not None else None
    for name, storage in storages.items():
        if name in failures:
            _discard(storage, written[name])
            continue
        try:
            if sig is not None:  # the signature first: the manifest is still last
                written[name].append(sig_key(mkey))
                storage.put(sig_key(mkey), [sig])
            storage.put(mkey, [body])
        except DbcrateError as exc:
            failures[name] = exc
            _discard(storage, written[name])
            continue
        result.copies.append(StoredCopy(target=name, key=key, size=stored.size))
    if not result.copies:
        result.manifest = None
    return result


def _signer(job: JobConfig) -> signing.SigningKey | None:
    """The job's manifest signing key, if it has one. Raises ``ConfigError``."""
    if job.signing_key_file is None:
        return None
    return signing.load_signing_key(job.signing_key_file, file=job.source,
                                    key=f"job {job.name}: signing_key_file")


def _store(
    dump: Iterator[bytes],
    key: str,
    plan: EncodePlan,
    storages: dict[str, Storage],
    failures: dict[str, DbcrateError],
    written: dict[str, list[str]],
    progress: Progress,
) -> tuple[Digest, Digest]:
    """Stream one dump through the plan's codecs to every target not failed yet.

    Returns the plaintext and stored digests. A dump or stage error propagates (every
    upload aborts); a target's own failure is recorded in ``failures``.
    """
    plain, stored = HashStage(), HashStage()
    dumped = Counter(lambda n: progress.update(n, stored.size))
    encode: list[Stage] = [*(c.encoder() for c in plan.codecs), stored]
    live = {n: s for n, s in storages.items() if n not in failures}
    # two threads: read + count + hash the dump | compress + encrypt + hash + upload
    source = Tracked(apply(threaded(apply(dump, [dumped, plain])), encode))
    try:
        outcomes = fanout(source, [_uploader(s, key) for s in live.values()]) if live else []
    finally:
        # if every upload failed early (or a signal arrived), stop the dump tool now: this
        # stops and joins the reader thread, which closes the dump it runs (never here)
        source.close()
        progress.finish()
    for name, outcome in zip(live, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            failures[name] = _as_error(outcome, name)
        else:
            written[name].append(key)
    return plain.digest(), stored.digest()


def _uploader(storage: Storage, key: str) -> Callable[[Iterator[bytes]], ObjectInfo]:
    def upload(chunks: Iterator[bytes]) -> ObjectInfo:
        return storage.put(key, chunks)

    return upload


def _as_error(exc: BaseException, target: str) -> DbcrateError:
    if isinstance(exc, DbcrateError):
        return exc
    return StorageError(f"target {target}: upload failed: {type(exc).__name__}: {exc}")


def _discard(storage: Storage, keys: list[str]) -> None:
    """Best-effort removal of data objects that will get no manifest."""
    for key in keys:
        try:
            storage.delete(key)
        except DbcrateError as exc:
            log.warning("could not remove %s after a failed backup: %s", key, exc)
