"""Back up one job: dump -> compress -> encrypt -> every target, manifest last."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from dbcrate import __version__, catalog, interrupt
from dbcrate.config import Config, JobConfig
from dbcrate.config.pitr import is_physical
from dbcrate.engines import Connection, open_counter, open_engine
from dbcrate.errors import DbcrateError, StorageError
from dbcrate.model import Digest, Manifest, ObjectInfo, PartRecord, StoredCopy
from dbcrate.operations import leftovers, preflight
from dbcrate.operations.fanout import Tracked, fanout
from dbcrate.operations.pipeline import EncodePlan, encode_plan
from dbcrate.operations.preflight import TargetResult
from dbcrate.operations.progress import Counter, Progress, Silent
from dbcrate.storage import Storage, open_target
from dbcrate.streams import HashStage, SizeStage, Stage, apply, threaded

if TYPE_CHECKING:
    from dbcrate import signing

log = logging.getLogger("dbcrate.backup")


@dataclass
class BackupResult:
    """What one job's backup did, per target. ``ok`` only if every target has it."""

    job: str
    manifest: Manifest | None = None
    copies: list[StoredCopy] = field(default_factory=list)
    failures: dict[str, DbcrateError] = field(default_factory=dict)
    #: per target, in job order: the step it reached, its error, its busy seconds
    results: list[TargetResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.manifest is not None and not self.failures

    @property
    def outcome(self) -> str:
        """``complete``, ``partial`` or ``failed`` (see ``operations.preflight``)."""
        return preflight.outcome(len(self.copies), len(self.failures))


def run_backup(config: Config, job: JobConfig, progress: Progress | None = None) -> BackupResult:
    """Back up ``job`` to each of its targets.

    The engine's extra parts (e.g. PostgreSQL globals) are stored first, then the main
    dump; a backup exists only once its manifest is written, last. If a dump or a stage
    fails, no target gets a manifest or an object at a final key and the error propagates
    (``DumpFailed``, ``CorruptedData``, ``DatabaseError`` ...). If a single target fails,
    the others still complete; the failure is recorded in the result.

    First every target is checked read-only (``preflight.check``); those failing are
    recorded and skipped. If none passes, nothing is dumped: the result has no
    manifest and a failure (``StorageError``, exit 4) per target.
    """
    progress = progress or Silent()
    interrupt.doing(f"backup of {job.name}")
    all_storages = {name: open_target(config.target(name)) for name in job.targets}
    results = {name: preflight.check(name, s, job.name) for name, s in all_storages.items()}
    failures: dict[str, DbcrateError] = {
        n: r.error for n, r in results.items() if r.error is not None}
    storages = {n: s for n, s in all_storages.items() if n not in failures}
    if not storages:
        return BackupResult(job=job.name, failures=failures, results=list(results.values()))
    for storage in storages.values():
        leftovers.sweep_quietly(storage, job.name)  # what killed runs left behind
    physical = is_physical(job)  # a base backup (docs/pitr.md)
    if physical:  # loaded only for one
        from dbcrate.operations.pitr import base as pitr_base
    engine = pitr_base.open_physical(job) if physical else open_engine(
        job.engine, Connection(job.url, job.password, job.options))
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
    written: dict[str, list[str]] = {name: [] for name in storages}
    for name in storages:  # passed the preflight; ok again only once the manifest is stored
        results[name].ok, results[name].step = False, "upload"

    parts: list[PartRecord] = []
    try:
        for part in engine.extra_parts():
            part_key = catalog.data_key(job.name, started, backup_id, (part.ext, *plan.exts),
                                        part=part.name)
            progress.start(f"{job.name} {part.name}")
            plain_d, stored_d = _store(engine.dump_part(part.name), part_key, plan, storages,
                                       failures, written, progress, results)
            parts.append(PartRecord(part.name, part_key, plain_d, stored_d))

        progress.start(f"{job.name}: {info.tool} {info.tool_version} -> {', '.join(storages)}")
        # backup-time row counts, as the dump streams (or in its snapshot: count_rows)
        counter = None if physical else open_counter(job.engine, job.verify.count_rows, engine)
        dump = engine.dump() if counter is None else counter(engine.dump())
        plain, stored = _store(dump, key, plan, storages, failures, written, progress, results,
                               hash_plaintext=plan.plaintext_sha256)
        stats = counter.stats() if counter is not None else None
        if stats is not None:  # written after the main dump, encrypted like it
            stats_key = catalog.data_key(job.name, started, backup_id, ("json", *plan.exts),
                                         part="stats")
            parts.append(PartRecord("stats", stats_key, *_store(
                iter([stats]), stats_key, plan, storages, failures, written, Silent(),
                results)))
    except BaseException:  # no manifest will be written: the parts stored so far go too
        for name, storage in storages.items():
            _discard(storage, written[name])
        raise
    finished = datetime.now(UTC)

    manifest = Manifest(
        format=catalog.FORMAT, id=backup_id, job=job.name, engine=job.engine,
        server_version=info.server_version, tool=info.tool, tool_version=info.tool_version,
        stages=plan.stages, started_at=started, finished_at=finished,
        plaintext=plain, stored=stored, encryption=plan.encryption,
        recipients=plan.recipients, key_id=plan.key_id, dbcrate_version=__version__,
        status="complete", data_key=key, parts=tuple(parts),
    )
    if physical:  # once its stop segment is archived on every target
        try:
            manifest = pitr_base.complete(
                job, engine, {n: s for n, s in storages.items() if n not in failures},
                manifest, config.agent.state_path)
        except BaseException:
            for name, storage in storages.items():
                _discard(storage, written[name])
            raise
    if job.encryption == "aes-256-gcm" and job.encryption_key is not None:
        from dbcrate import signing

        tag = signing.mac(signing.mac_key(job.encryption_key),
                          catalog.mac_input(catalog.encode(manifest)))
        manifest = replace(manifest, hmac=tag)
    stopped = interrupt.interrupted()
    if stopped is not None:  # aborted from another thread (the agent's grace period ended)
        for name, storage in storages.items():
            _discard(storage, written[name])
        raise stopped
    result = BackupResult(job=job.name, manifest=manifest, failures=failures,
                          results=list(results.values()))
    body = catalog.encode(manifest)
    mkey = catalog.manifest_key(key)
    sig = None
    if signer is not None:
        from dbcrate import signing

        sig = signing.sign(signer, body)
    try:
        for name, storage in storages.items():
            res = results[name]
            if name in failures:
                res.error = failures[name]
                _discard(storage, written[name])
                continue
            res.step = "manifest"
            t0 = time.monotonic()
            try:
                if sig is not None:  # the signature first: the manifest is still last
                    written[name].append(catalog.sig_key(mkey))
                    storage.put(catalog.sig_key(mkey), [sig])
                storage.put(mkey, [body])
            except DbcrateError as exc:
                failures[name] = res.error = exc
                _discard(storage, written[name])
                continue
            finally:
                res.seconds += time.monotonic() - t0
            res.ok, res.step = True, "done"
            result.copies.append(StoredCopy(target=name, key=key, size=stored.size))
    except BaseException:  # interrupted while writing manifests: no half-stored target stays
        done = {c.target for c in result.copies}
        for name, storage in storages.items():
            if name not in done:
                _discard(storage, [mkey, *written[name]])
        raise
    if not result.copies:
        result.manifest = None
    return result


def _signer(job: JobConfig) -> signing.SigningKey | None:
    """The job's manifest signing key, if it has one. Raises ``ConfigError``."""
    if job.signing_key_file is None:
        return None
    from dbcrate import signing  # cryptography's key formats: only for a job that signs

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
    results: dict[str, TargetResult],
    *,
    hash_plaintext: bool = True,
) -> tuple[Digest, Digest]:
    """Stream one dump through the plan's codecs to every target not failed yet.

    Returns the plaintext and stored digests; without ``hash_plaintext`` the plaintext is
    only counted (its digest's ``sha256`` is None). A dump or stage error propagates
    (every upload aborts); a target's own failure is recorded in ``failures``.
    """
    plain = HashStage() if hash_plaintext else SizeStage()
    stored = HashStage()
    dumped = Counter(lambda n: progress.update(n, stored.size))
    first: list[Stage] = [dumped, plain, *(c.encoder() for c in plan.compressors)]
    then: list[Stage] = [*(c.encoder() for c in plan.sealers), stored]
    live = {n: s for n, s in storages.items() if n not in failures}
    # two threads: count + hash + compress the dump | encrypt + hash + upload (the dump's
    # own reader thread reads its pipe); what waits between them is compressed: small
    source = Tracked(apply(threaded(apply(dump, first), depth=2), then))
    for name in live:  # may exist from here on: a failed backup removes it (idempotent)
        written[name].append(key)
    try:
        uploaders = [_uploader(s, key, results[n]) for n, s in live.items()]
        outcomes = fanout(source, uploaders) if live else []
    finally:
        # if every upload failed early (or a signal arrived), stop the dump tool now: this
        # stops and joins the reader thread, which closes the dump it runs (never here)
        source.close()
        progress.finish()
    for name, outcome in zip(live, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            failures[name] = _as_error(outcome, name)
    return plain.digest(), stored.digest()


def _uploader(storage: Storage, key: str,
              result: TargetResult) -> Callable[[Iterator[bytes]], ObjectInfo]:
    def upload(chunks: Iterator[bytes]) -> ObjectInfo:
        t0 = time.monotonic()
        try:
            return storage.put(key, chunks)
        finally:
            result.seconds += time.monotonic() - t0

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
