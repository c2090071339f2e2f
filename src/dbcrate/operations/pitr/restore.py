"""``dbcrate restore JOB --pitr``: pick a base, check WAL continuity, unpack the base into
an empty data directory (digest-checked, then ``pg_verifybackup``), replay WAL to the
target with a recovery server that fetches nothing itself (``spool``), stop it cleanly.

The base is read once: its stored digest, plaintext size (and SHA-256, if recorded) are
checked as it is unpacked; a mismatch raises before ``pg_verifybackup`` or the server runs.

Nothing is touched before the continuity check passes; on any failure the data
directory's contents are removed (no promoted copy is left behind).
"""

from __future__ import annotations

import logging
import os
import pwd
import shutil
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from dbcrate import catalog, pgbin
from dbcrate.catalog import wal
from dbcrate.config import Config, JobConfig
from dbcrate.engines.postgres.physical.recovery import (
    RecoveryServer,
    write_archive_off,
)
from dbcrate.engines.postgres.physical.untar import unpack
from dbcrate.errors import (
    BackupNotFound,
    RestoreRefused,
    UsageError,
)
from dbcrate.model import Manifest
from dbcrate.operations.listing import manifests
from dbcrate.operations.pipeline import KeyMaterial
from dbcrate.operations.pitr import continuity
from dbcrate.operations.pitr.archive import (
    WalConflict,
    objects,
    read_archive_info,
)
from dbcrate.operations.pitr.feed import Feeder, serve
from dbcrate.operations.pitr.spool import Spool
from dbcrate.operations.restore import Located, checked, plaintext
from dbcrate.sandbox.privileges import drop_privileges_prefix
from dbcrate.storage import Storage, open_target
from dbcrate.streams import threaded

log = logging.getLogger("dbcrate.pitr")

ACTIONS = ("promote", "pause", "shutdown")


@dataclass(frozen=True)
class PitrRequest:
    """What ``restore --pitr`` was asked (exactly one of to_time, to_lsn, to_end)."""

    data_dir: Path
    to_time: datetime | None = None
    to_lsn: str | None = None
    to_end: bool = False
    base_id: str | None = None
    timeline: str = "latest"
    action: str = "promote"
    run_as: str | None = None
    resume_archiving: bool = False
    keep_running: bool = False
    port: int | None = None
    target: str | None = None


@dataclass
class PitrResult:
    base_id: str
    stop_lsn: str
    last_commit: str | None
    timeline: int | None
    target: str
    seconds: float
    stopped_at: str | None = None

    def json(self) -> dict[str, object]:
        return {"base_id": self.base_id, "stop_lsn": self.stop_lsn,
                "last_commit_time": self.last_commit, "timeline": self.timeline,
                "new_timeline": self.timeline, "target": self.target,
                "stopped_at": self.stopped_at, "seconds": round(self.seconds, 3)}


def _bases(storage: Storage, job: JobConfig) -> list[Manifest]:
    return sorted((m for m in manifests(storage, job.name) if m.kind == "base"),
                  key=lambda m: m.finished_at)


def choose_base(bases: list[Manifest], req: PitrRequest) -> Manifest:
    """The newest base whose stop precedes the target (``--base``: that one). Raises
    ``BackupNotFound``."""
    if req.base_id:
        hit = [m for m in bases if m.id.startswith(req.base_id)]
        if len(hit) != 1:
            raise BackupNotFound(f"no single base backup with id {req.base_id!r}",
                                 hint="`dbcrate list JOB` shows the bases (kind base)")
        return hit[0]
    fits = bases
    if req.to_time is not None:
        when = req.to_time
        fits = [m for m in bases if m.finished_at <= when]
    elif req.to_lsn is not None:
        lsn = wal.parse_lsn(req.to_lsn)
        fits = [m for m in bases if wal.parse_lsn(m.extra["stop_lsn"]) <= lsn]
    if not fits:
        raise BackupNotFound("no base backup ends before the target" if bases else
                             "the job has no base backups",
                             hint="`dbcrate list JOB` shows the bases; run `dbcrate backup JOB`")
    return fits[-1]


def _server_user(req: PitrRequest) -> pwd.struct_passwd | None:
    """Who runs the server: None (ourselves) unless we are root."""
    if os.geteuid() != 0:
        if req.run_as and req.run_as != pwd.getpwuid(os.geteuid()).pw_name:
            raise UsageError("--run-as needs root")
        return None
    if req.run_as:
        try:
            return pwd.getpwnam(req.run_as)
        except KeyError:
            raise UsageError(f"--run-as: no user {req.run_as!r}") from None
    parent = req.data_dir.resolve().parent
    owner = pwd.getpwuid(parent.stat().st_uid)
    if owner.pw_uid == 0:
        raise UsageError(f"PostgreSQL does not run as root and {parent} is root's",
                         hint="pass --run-as USER (the server's OS user)")
    return owner


def _check_empty(d: Path) -> None:
    if d.exists() and (not d.is_dir() or any(d.iterdir())):
        raise RestoreRefused(f"the data directory {d} is not empty",
                             hint="give a new or empty directory (--data-dir)")


def run_pitr(config: Config, job: JobConfig, req: PitrRequest, keys: KeyMaterial) -> PitrResult:
    """Restore ``job`` to the request's target into ``req.data_dir``. Raises
    ``BackupNotFound``, ``WalGap`` (exit 13; nothing touched), ``RestoreRefused`` (a
    non-empty data dir, exit 7), ``IntegrityError``s naming the damaged object (exit 5),
    ``RestoreFailed``, ``ToolNotFound``, ``StorageError``, ``DecryptionError``."""
    t0 = time.monotonic()
    if req.action not in ACTIONS:
        raise UsageError(f"--target-action {req.action!r}", hint=f"one of {', '.join(ACTIONS)}")
    names = [req.target] if req.target else list(job.targets)
    found: list[tuple[str, Storage, list[Manifest]]] = []
    for name in names:
        storage = open_target(config.target(name))
        found.append((name, storage, _bases(storage, job)))
    tname, storage, bases = next(((n, s, b) for n, s, b in found if b), found[0])
    base = choose_base(bases, req)
    located = checked(Located(base, tname, storage), job)
    base = located.manifest
    seg_size = int(base.extra["segment_size"])
    tli = int(base.extra["timeline"])
    info = read_archive_info(storage, job.name)
    if info is not None and info.system_identifier != base.extra["system_identifier"]:
        raise WalConflict(f"the WAL archive on {tname} is of another database system "
                          f"than base {base.id}")
    stored = objects(storage, job.name)
    segs = continuity.available(stored, seg_size, tli)
    first = wal.segment_no(wal.parse_lsn(base.extra["start_lsn"]), seg_size)
    last_needed = wal.segment_no(wal.parse_lsn(base.extra["stop_lsn"]), seg_size)
    if req.to_time is not None:
        last = max(last_needed, continuity.end_for_time(segs, first, req.to_time))
        what = f"a restore to {catalog.encode_time(req.to_time)}"
    elif req.to_lsn is not None:
        last = max(last_needed, wal.segment_no(wal.parse_lsn(req.to_lsn), seg_size))
        what = f"a restore to LSN {req.to_lsn}"
    else:
        last = max([last_needed, *segs])
        what = "a restore to the end of the archive"
    sp = continuity.span(segs, first, last)
    if sp.missing:
        raise continuity.gap_error(sp, tli, seg_size, job.name, what)
    _check_empty(req.data_dir)
    user = _server_user(req)
    by_name = {o.name: o for o in stored}
    created = not req.data_dir.exists()
    req.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    spool_root = Path(tempfile.mkdtemp(prefix=".dbcrate-pitr-", dir=req.data_dir.parent))
    server: RecoveryServer | None = None
    feeder: Feeder | None = None
    ok = False
    try:
        # decoding (a thread of its own) overlaps with writing the files
        unpack(threaded(plaintext(located, keys), depth=4), req.data_dir)
        log.info("base %s unpacked into %s (%.2f s)", base.id, req.data_dir,
                 time.monotonic() - t0)
        if user is not None:
            _chown_tree(req.data_dir, user)
            os.chown(spool_root, user.pw_uid, user.pw_gid)
        req.data_dir.chmod(0o700)
        spool = Spool(spool_root, user.pw_uid if user else None, user.pw_gid if user else None)
        major = int(base.extra.get("pg_version", base.server_version).split(".")[0])
        root = pgbin.ensure(major, check=pgbin.SERVER_FILES)
        prefix = drop_privileges_prefix(user) if user is not None else []
        server = RecoveryServer(root / "bin", req.data_dir, spool_root,
                                _settings(req, spool), prefix, req.port if req.keep_running
                                else None, req.action)
        feeder = Feeder(spool, storage, job, by_name, keys, seg_size, info)
        feeder.start_at(tli, first)  # fetching overlaps with pg_verifybackup and start-up
        t1 = time.monotonic()
        server.verify_backup()
        log.info("pg_verifybackup passed (%.2f s)", time.monotonic() - t1)
        if not req.resume_archiving:
            write_archive_off(req.data_dir)
        (req.data_dir / "recovery.signal").touch()
        if user is not None:
            for p in (req.data_dir / "recovery.signal", req.data_dir / "postgresql.auto.conf"):
                os.chown(p, user.pw_uid, user.pw_gid)
        t1 = time.monotonic()
        server.start()
        state = serve(server, feeder)
        log.info("recovery reached its target: %d WAL files replayed (%.2f s)",
                 feeder.handed, time.monotonic() - t1)
        if req.keep_running or req.action == "pause":
            server.release()
        else:
            t1 = time.monotonic()
            server.stop()
            log.info("recovery server stopped (%.2f s)", time.monotonic() - t1)
        ok = True
        return PitrResult(base.id, base.extra["stop_lsn"], state.last_commit, state.timeline,
                          tname, time.monotonic() - t0, state.stopped_at)
    finally:
        if feeder is not None:
            feeder.close()  # idempotent
        if server is not None and not ok:
            server.stop(fast=False)
        if not ok:
            _empty(req.data_dir, remove=created)
        if ok and (req.keep_running or req.action == "pause"):
            pass  # the running server's restore_command and log live in the spool
        else:
            shutil.rmtree(spool_root, ignore_errors=True)


def _settings(req: PitrRequest, spool: Spool) -> dict[str, str]:
    s = {"restore_command": spool.restore_command, "recovery_target_timeline": req.timeline,
         "recovery_target_action": req.action}
    if req.to_time is not None:
        s["recovery_target_time"] = req.to_time.astimezone(UTC).strftime(
            "%Y-%m-%d %H:%M:%S.%f+00:00")
    elif req.to_lsn is not None:
        s["recovery_target_lsn"] = req.to_lsn
    else:
        s.pop("recovery_target_action")
    return s


def _chown_tree(root: Path, user: pwd.struct_passwd) -> None:
    os.chown(root, user.pw_uid, user.pw_gid)
    for d, dirs, files in os.walk(root):
        for name in [*dirs, *files]:
            os.chown(Path(d) / name, user.pw_uid, user.pw_gid, follow_symlinks=False)


def _empty(d: Path, *, remove: bool) -> None:
    """Remove what the restore put into ``d`` (and ``d`` itself if it created it)."""
    if remove:
        shutil.rmtree(d, ignore_errors=True)
        return
    for entry in d.iterdir() if d.exists() else ():
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
