"""``dbcrate wal-push JOB %p`` (PostgreSQL's ``archive_command``): store one WAL file on
every target of the job, through the job's codecs.

Exit 0 only once every target has the file. The same name and digest already stored: no
upload. Another digest under the name, or a segment of another database system: refused,
nothing overwritten (``WalConflict``). The first segment of timeline N > 1 also stores
``0000000N.history`` when a target lacks it. Imports only what a push needs.
"""

from __future__ import annotations

import hashlib
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path

from dbcrate.catalog import wal
from dbcrate.config import Config, JobConfig
from dbcrate.engines.postgres.physical.walpage import read_header
from dbcrate.errors import DbcrateError, UsageError
from dbcrate.operations.pipeline import EncodePlan, encode_plan
from dbcrate.operations.pitr.archive import (
    ArchiveInfo,
    WalConflict,
    copies,
    ensure_archive_info,
)
from dbcrate.storage import Storage, open_target
from dbcrate.streams import apply

log = logging.getLogger("dbcrate.wal")


@dataclass
class PushResult:
    """What one push did: per target ``stored`` (uploaded) or ``present`` (already there)."""

    name: str
    sha256: str
    targets: dict[str, str] = field(default_factory=dict)


def _check_name(name: str) -> None:
    if not wal.is_wal_name(name):
        raise UsageError(f"{name!r} is not a WAL file name (segment, .history, .backup or "
                         ".partial)", hint="archive_command passes %p: `dbcrate wal-push "
                         "JOB %p`")


def push(config: Config, job: JobConfig, path: str) -> PushResult:
    """Store the WAL file at ``path`` on every target of ``job``. Raises ``UsageError``
    (not a WAL file name, unreadable), ``WalConflict``, ``StorageError``, ``InvalidKey``;
    when a target fails the others are still written and the first error is raised."""
    storages = {n: open_target(config.target(n)) for n in job.targets}
    result = push_file(job, storages, Path(path))
    name = result.name
    if wal.SEGMENT.fullmatch(name) and int(name[:8], 16) > 1:
        history = Path(path).with_name(wal.history_name(int(name[:8], 16)))
        lacking = {n: s for n, s in storages.items() if not copies(s, job.name, history.name)}
        if lacking and history.exists():
            push_file(job, lacking, history)
    return result


def push_file(job: JobConfig, storages: dict[str, Storage], path: Path) -> PushResult:
    """Store one WAL file on ``storages`` (errors as ``push``; a newer ``.partial``
    replaces the older one)."""
    name = path.name
    _check_name(name)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read WAL file {path}: {exc.strerror or exc}",
                         hint="wal-push runs in the data directory, as the server's user") \
            from None
    info: ArchiveInfo | None = None
    if wal.SEGMENT.fullmatch(name) or wal.PARTIAL.fullmatch(name):
        header = read_header(data)
        if header is None:
            raise WalConflict(f"{path} is not a WAL segment (no long page header)")
        info = ArchiveInfo(str(header.system_identifier), header.segment_size)
    plan = encode_plan(job)
    listed: dict[str, list[wal.WalObject]] = {}
    errors: list[DbcrateError] = []
    for tname, storage in storages.items():
        try:
            if info is not None:
                ensure_archive_info(storage, job.name, info)
            listed[tname] = copies(storage, job.name, name)
        except DbcrateError as exc:
            log.error("target %s: %s", tname, exc.message)
            errors.append(exc)
    # the usual case, a file no target has yet: encode it while its digest is computed
    # (hashlib and zstd let go of the GIL), ~15 ms less per 16 MiB segment
    fresh = bool(listed) and not any(listed.values())
    sha, encoded = _digest_and_encode(data, plan, speculate=fresh)
    result = PushResult(name, sha)
    for tname, storage in storages.items():
        if tname not in listed:
            continue
        try:
            stored = listed[tname]
            if any(c.sha256 == sha for c in stored):
                result.targets[tname] = "present"
                continue
            if stored and not wal.PARTIAL.fullmatch(name):
                raise WalConflict(
                    f"target {tname} already holds {name} with other content "
                    f"(sha256 {stored[0].sha256[:16]}..., this file {sha[:16]}...)",
                    hint="two clusters archive into one job, or the archive was restored "
                    "over; nothing was overwritten (`dbcrate wal verify JOB`)")
            if encoded is None:
                encoded = b"".join(apply([data], [c.encoder() for c in plan.codecs]))
            storage.put(wal.wal_key(job.name, name, sha, plan.exts), [encoded])
            for old in stored:  # an older .partial of the same segment
                storage.delete(old.key)
            result.targets[tname] = "stored"
        except DbcrateError as exc:
            log.error("target %s: %s", tname, exc.message)
            errors.append(exc)
    if errors:
        raise errors[0]
    return result


def _digest_and_encode(data: bytes, plan: EncodePlan,
                       speculate: bool) -> tuple[str, bytes | None]:
    """``data``'s SHA-256 (hex) and, when ``speculate``, its encoding through ``plan``'s
    codecs, computed side by side (a thread hashes). Raises what the codecs raise."""
    if not speculate:
        return hashlib.sha256(data).hexdigest(), None
    digest: list[str] = []
    hasher = threading.Thread(target=lambda: digest.append(hashlib.sha256(data).hexdigest()),
                              name="wal-push-sha256")
    hasher.start()
    try:
        encoded = b"".join(apply([data], [c.encoder() for c in plan.codecs]))
    finally:
        hasher.join()
    return (digest[0] if digest else hashlib.sha256(data).hexdigest()), encoded
