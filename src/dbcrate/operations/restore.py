"""Restore or extract a backup: select, then in one read of the stored object check its
digest, decrypt, decompress, check the plaintext's size (and SHA-256, when the manifest
records one), and hand the native dump to the engine (or a stream)."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import BinaryIO, TypeVar

from dbcrate import catalog
from dbcrate.config import Config, JobConfig
from dbcrate.engines import Connection, Engine, RestoreOptions, open_engine
from dbcrate.errors import (
    BackupNotFound,
    DbcrateError,
    DigestMismatch,
    ManifestError,
    StorageError,
    TruncatedData,
    UsageError,
)
from dbcrate.model import EngineInfo, Manifest
from dbcrate.operations.authn import authenticate, policy, require_encryption, warn_weak
from dbcrate.operations.listing import Skipped, candidates, manifests, read
from dbcrate.operations.pipeline import (
    KeyMaterial,
    check_digest,
    decoded,
    decoders,
    foreign,
    primed,
    verified,
)
from dbcrate.operations.progress import Counter, Progress, Silent
from dbcrate.storage import Storage, open_target
from dbcrate.streams import close_iter, digest_of

log = logging.getLogger("dbcrate.restore")


@dataclass(frozen=True)
class Selector:
    """Which backup: exactly one of latest / at / backup_id."""

    latest: bool = False
    at: datetime | None = None
    backup_id: str | None = None


@dataclass(frozen=True)
class Located:
    """A selected backup and the target it will be read from; ``others`` are its
    further copies in job order, ``skipped`` the ``(target, why)`` passed over."""

    manifest: Manifest
    target: str
    storage: Storage
    others: tuple[Located, ...] = ()
    skipped: tuple[tuple[str, str], ...] = ()


def locate(config: Config, job: JobConfig, selector: Selector, target: str | None) -> Located:
    """Find the backup ``selector`` names on ``target`` or, by default, on the job's
    targets in order (an unreachable target is skipped with a warning).

    Raises ``BackupNotFound``, ``UsageError``, or the target's error (e.g. a
    ``StorageError`` naming rejected credentials, exit 4) when only one target was asked
    for or no target holding backups could be read: a target that cannot be read is
    never reported as "no backups".
    """
    names = [target] if target else list(job.targets)
    found: list[tuple[str, Storage, list[Manifest]]] = []
    failed: list[tuple[str, DbcrateError]] = []
    for name in names:
        try:
            storage = open_target(config.target(name))
            # only the manifests the choice can fall on (listing.candidates)
            found.append((name, storage, candidates(
                storage, job.name, at=selector.at, backup_id=selector.backup_id)))
        except DbcrateError as exc:
            if target:
                raise
            failed.append((name, exc))
    every = [m for _, _, ms in found for m in ms]
    if not every and failed and not any(True for _, s, _ in found for _ in manifests(s, job.name)):
        last = failed[-1][1]
        err = type(last).__new__(type(last))
        err.__dict__.update(last.__dict__)
        err.message = f"no backups of job {job.name!r} could be read: " + "; ".join(
            f"target {name}: {e.message}" for name, e in failed)
        err.args = (err.message,)
        raise err
    for name, problem in failed:
        log.warning("target %s skipped: %s", name, problem.message)
    try:
        chosen = catalog.select(every, job.name, latest=selector.latest, at=selector.at,
                                backup_id=selector.backup_id)
    except BackupNotFound:  # decided on the whole catalog, and said as it says it
        found = [(name, storage, list(manifests(storage, job.name)))
                 for name, storage, _ in found]
        chosen = catalog.select([m for _, _, ms in found for m in ms], job.name,
                                latest=selector.latest, at=selector.at,
                                backup_id=selector.backup_id)
    copies = [Located(next(m for m in ms if m.id == chosen.id), name, storage)
              for name, storage, ms in found if any(m.id == chosen.id for m in ms)]
    if not copies:  # pragma: no cover
        raise BackupNotFound(f"backup {chosen.id} vanished while reading targets")
    return replace(copies[0], others=tuple(copies[1:]),
                   skipped=tuple((n, e.message) for n, e in failed))


#: what makes a copy unusable while another target may hold a good one
_SKIPPABLE = (StorageError, TruncatedData, DigestMismatch)

T = TypeVar("T")


def each_copy(located: Located, job: JobConfig, attempt: Callable[[Located], T], *,
              allow_unencrypted: bool = False, retry: Callable[[], bool] = lambda: True) -> T:
    """``attempt(copy)`` on the first copy (``located``, then its ``others``) that works:
    its manifest passes ``checked``, its parts (small) match the manifest's size and
    SHA-256 before ``attempt`` starts, and ``attempt`` itself (which streams the main
    object through ``plaintext``, checked as it goes) raises nothing skippable.

    A copy that is missing, unreachable or fails its digest check is skipped with a
    warning naming the target and the reason, while ``retry()`` says another try is
    harmless (``cat`` has written nothing yet); the returned ``Located`` lists them in
    ``skipped``. If every copy fails, the last copy's error propagates, its message
    naming every target tried. Untrusted or downgraded manifests are never skipped
    (``UntrustedManifest``/``DowngradeRefused`` propagate at once)."""
    skipped = list(located.skipped)
    copies = [replace(located, others=(), skipped=()), *located.others]
    for i, copy in enumerate(copies):
        try:
            good = checked(copy, job, allow_unencrypted=allow_unencrypted)
            for part in good.manifest.parts:
                check_digest(digest_of(good.storage.get(part.key)), part.stored,
                             f"stored object {good.target}:{part.key}")
            done = replace(good, skipped=tuple(skipped))
            return attempt(done)
        except _SKIPPABLE as exc:
            if len(copies) == 1 or not retry():
                raise
            skipped.append((copy.target, exc.message))
            if i == len(copies) - 1:
                err = type(exc).__new__(type(exc))
                err.__dict__.update(exc.__dict__)
                err.message = f"no copy of backup {copy.manifest.id} could be read: " + (
                    "; ".join(f"target {t}: {why}" for t, why in skipped))
                err.args = (err.message,)
                raise err from None
            log.warning("copy on target %s skipped: %s", copy.target, exc.message)
    raise AssertionError("unreachable")  # pragma: no cover


def locate_named(config: Config, job: JobConfig, selector: Selector, target: str | None) -> Located:
    """``locate``, except that an ``--id`` naming a backup whose manifest exists but is
    damaged raises that ``ManifestError`` (exit 5) instead of ``BackupNotFound``."""
    try:
        return locate(config, job, selector, target)
    except BackupNotFound:
        wanted = selector.backup_id
        if not wanted or len(wanted) < 8:
            raise
        for name in [target] if target else list(job.targets):
            skipped: Skipped = []
            try:
                for _ in read(open_target(config.target(name)), job.name, skipped):
                    pass
            except DbcrateError:
                continue
            for key, why in skipped:
                if f"-{wanted}" in key.rsplit("/", 1)[-1]:
                    raise ManifestError(why, hint="the backup's manifest is damaged; "
                                        "restore another backup (`dbcrate list`)") from None
        raise


def checked(located: Located, job: JobConfig, *, allow_unencrypted: bool = False) -> Located:
    """Re-read the selected manifest and check it before any backup byte is read:
    authenticated under the job's policy (signature / HMAC), and encrypted the way the
    job requires (no downgrade). Warns when it is not authenticated at all. Returns the
    located backup with the manifest exactly as authenticated.

    Raises ``UntrustedManifest``/``DowngradeRefused``/``ManifestError`` (exit 5).
    """
    key = catalog.manifest_key(located.manifest.data_key)
    body = b"".join(located.storage.get(key))
    m = catalog.decode(body, where=key)
    if m.id != located.manifest.id:
        raise ManifestError(f"manifest {key} changed while it was being read")
    how = authenticate(located.storage, key, body, m, policy(job),
                       allow_unencrypted=allow_unencrypted)
    require_encryption(m, key, job, allow_unencrypted=allow_unencrypted)
    warn_weak(m, key, job, how)
    return Located(m, located.target, located.storage, located.others, located.skipped)


def plaintext(
    located: Located, keys: KeyMaterial, progress: Progress | None = None, part: str = "",
    *, prechecked: bool = False,
) -> Iterator[bytes]:
    """The native dump of ``located`` (or of its extra ``part``), checked end to end in
    one read of the stored object (``pipeline.decoded``): its size and SHA-256 are
    checked as it streams, then the plaintext's size and SHA-256 (``pipeline.verified``;
    only the size, never hashed, when the manifest records no SHA-256: a zstd backup's
    frames check their own content); either mismatch raises before the consumer sees
    end-of-stream. The first chunk is produced before this returns, so a
    missing object or a key that opens nothing raises before any consumer starts.
    ``prechecked`` is accepted for callers that already checked the stored digest; the
    stored bytes are hashed as they stream either way.

    Raises ``UsageError`` (no such part, key material missing), ``StorageError``,
    ``TruncatedData``/``DigestMismatch``/``CorruptedData`` (exit 5),
    ``NoMatchingIdentity``/``WrongKey`` (exit 6, only when the stored object is intact).
    """
    del prechecked
    m, storage = located.manifest, located.storage
    key, stored, plain = m.data_key, m.stored, m.plaintext
    if part:
        record = m.part(part)
        if record is None:
            raise UsageError(f"backup {m.id} has no {part} part",
                             hint="it was made without it (see the job's settings)")
        key, stored, plain = record.key, record.stored, record.plaintext
    what = f"{located.target}:{key}"
    stages = decoders(m, keys)  # fail fast on missing key material
    prog = progress or Silent()
    fetched = Counter(lambda n: prog.update(n, n))
    chunks = decoded(storage.get(key), stored, [fetched, *stages], what,
                     foreign=lambda: foreign(m, keys))
    return primed(verified(chunks, plain, f"restored {part or 'dump'} of {m.id}"))


def run_restore(
    config: Config,
    job: JobConfig,
    selector: Selector,
    *,
    keys: KeyMaterial,
    options: RestoreOptions | None = None,
    target: str | None = None,
    to_url: str | None = None,
    to_password: str | None = None,
    progress: Progress | None = None,
    allow_unencrypted: bool = False,
) -> Located:
    """Restore a backup of ``job`` into ``to_url`` (default: the job's own database).

    Refuses (``RestoreRefused``) a non-empty target unless ``options.clean``, before
    reading any backup data. With ``options.with_globals`` the backup's ``globals`` part
    is applied first. A failure anywhere leaves the target as it was (engine-dependent;
    see ``Engine.restore``) and propagates. The manifest is authenticated and its
    encryption checked against the job's (``checked``) before the target is touched.
    The stored object is read once, checked as it streams; a copy found damaged or cut
    midway is rolled back like any failure and the next copy (another target) is
    restored instead (``each_copy``).
    """
    options = options or RestoreOptions()
    progress = progress or Silent()
    password = to_password if to_password is not None else job.password
    engine: Engine | None = None

    def attempt(copy: Located) -> Located:
        nonlocal engine
        m = copy.manifest
        if engine is None:  # the first copy whose manifest and parts check out
            if m.engine != job.engine:
                raise BackupNotFound(
                    f"backup {m.id} is a {m.engine} backup, job {job.name} is {job.engine}")
            engine = open_engine(job.engine,
                                 Connection(to_url or job.url, password, job.options))
            if options.with_globals and m.part("globals") is None:
                raise UsageError(f"backup {m.id} has no globals part", hint="it was made "
                                 "without globals = true; restore without --globals")
            backup = EngineInfo(m.engine, m.server_version, m.tool, m.tool_version)
            engine.check_restore_target(backup, options)
            if options.with_globals:
                progress.start(f"restoring globals of {m.id} from {copy.target}")
                try:
                    engine.restore_part("globals", plaintext(copy, keys, progress, "globals"),
                                        options)
                finally:
                    progress.finish()
        progress.start(f"restoring {m.id} from {copy.target}")
        try:
            stream = plaintext(copy, keys, progress)
            try:
                engine.restore(stream, options)
            finally:
                close_iter(stream)
        finally:
            progress.finish()
        return copy

    return each_copy(locate_named(config, job, selector, target), job, attempt,
                     allow_unencrypted=allow_unencrypted)


def run_cat(
    config: Config,
    job: JobConfig,
    selector: Selector,
    out: BinaryIO,
    *,
    keys: KeyMaterial,
    target: str | None = None,
    allow_unencrypted: bool = False,
) -> Located:
    """Write the native dump to ``out``. The manifest is checked first (``checked``):
    nothing is written for an untrusted or downgraded one. The stored object is read
    once, checked as it streams: if a check fails midway the error propagates and what
    was written must be discarded (the CLI says so); another copy is tried only while
    nothing was written (a missing or unreachable object)."""
    wrote = False

    def attempt(copy: Located) -> Located:
        nonlocal wrote
        for chunk in plaintext(copy, keys):
            wrote = True
            out.write(chunk)
        out.flush()
        return copy

    return each_copy(locate_named(config, job, selector, target), job, attempt,
                     allow_unencrypted=allow_unencrypted, retry=lambda: not wrote)
