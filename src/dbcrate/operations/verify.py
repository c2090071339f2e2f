"""``dbcrate verify``: restore a backup into a disposable server of its major and check
what arrived (docs/verify.md). Never connects to the job's database: storage and the
identity (or ``encryption_key``) suffice.

Order: select and authenticate the manifest; check size and SHA-256 of the object and of
every part before any server starts (a mismatch is a ``fail`` at ``integrity``); start
``TempPostgres`` of the backup's major under ``verify_dir``; pg_restore to the end
(errors counted); rows, large objects, foreign keys, amcheck, user checks; RTO alarm;
stop the server and remove its directory whatever happens.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbcrate import __version__, catalog, interrupt
from dbcrate.config import Config, JobConfig
from dbcrate.engines import Connection, RestoreOptions, open_engine
from dbcrate.engines.postgres import verify as pgverify
from dbcrate.errors import (
    DbcrateError,
    IntegrityError,
    ManifestError,
    RestoreFailed,
    ToolNotFound,
    UsageError,
)
from dbcrate.operations import records
from dbcrate.operations.listing import manifests
from dbcrate.operations.pipeline import KeyMaterial, check_digest, decoders
from dbcrate.operations.restore import Located, Selector, checked, locate_named, plaintext
from dbcrate.operations.verdict import (
    ALARM,
    FAIL,
    PASS,
    SKIP,
    Check,
    Verdict,
    decide,
    row_drops,
    user_check,
)
from dbcrate.operations.verify_mysql import verify_mysql
from dbcrate.operations.verify_redis import verify_redis
from dbcrate.sandbox import TempPostgres
from dbcrate.storage import open_target
from dbcrate.streams import digest_of

log = logging.getLogger("dbcrate.verify")

@dataclass
class Report:
    """Everything ``--json`` prints for one verdict."""

    job: str
    backup_id: str
    target: str
    engine: str
    checks: list[Check] = field(default_factory=list)
    server: str | None = None
    restore_seconds: float | None = None
    tables: list[dict[str, Any]] = field(default_factory=list)
    large_objects: dict[str, int | None] = field(
        default_factory=lambda: {"expected": None, "restored": None})
    previous: str | None = None
    record: str | None = None
    #: the SHA-256 of the stored record (audited)
    record_sha256: str | None = None
    #: redis: keys loaded (all databases)
    keys: int | None = None

    @property
    def verdict(self) -> Verdict:
        return decide(self.checks)

    def as_json(self) -> dict[str, Any]:
        v = self.verdict
        return {
            "job": self.job, "backup_id": self.backup_id, "target": self.target,
            "engine": self.engine, "result": v.result, "reason": v.reason,
            "failed_at": v.failed_at, "server": self.server,
            "restore_seconds": self.restore_seconds, "tables": self.tables,
            "large_objects": self.large_objects,
            "checks": [c.as_json() for c in self.checks],
            "previous": self.previous, "record": self.record,
            "record_sha256": self.record_sha256,
            **({"keys": self.keys} if self.engine == "redis" else {}),
        }


def _major(version: str) -> int:
    head = version.split(".")[0]
    if not head.isdigit():
        raise UsageError(f"the backup's server version {version!r} names no major")
    return int(head)


def _parent_dir(job: JobConfig) -> Path | None:
    """``verify_dir`` (None: ``$TMPDIR``). Raises ``UsageError`` if it is not a directory."""
    if job.verify.dir is None:
        return None
    path = Path(job.verify.dir)
    if not path.is_dir():
        raise UsageError(f"verify_dir {path} of job {job.name} is not a directory",
                         hint="create it (it holds the restored database while verifying)")
    return path


def integrity(located: Located) -> Check:
    """Size and SHA-256 of the stored object and every part against the manifest. Reads
    each object once; starts nothing. Storage errors propagate."""
    m, storage = located.manifest, located.storage
    objects = [(m.data_key, m.stored), *((p.key, p.stored) for p in m.parts)]
    for key, stored in objects:
        try:
            check_digest(digest_of(storage.get(key)), stored,
                         f"stored object {located.target}:{key}")
        except IntegrityError as e:
            return Check("integrity", FAIL, e.message)
    return Check("integrity", PASS, f"{len(objects)} objects")


def run_verify(config: Config, job: JobConfig, selector: Selector, *, keys: KeyMaterial,
               target: str | None = None) -> Report:
    """Verify one backup of ``job`` and return its report (``report.verdict``).

    Raises, without a verdict: ``BackupNotFound`` (9), ``UsageError`` (2), storage errors
    (4), ``ManifestError``/``UntrustedManifest`` (5), decryption errors (6),
    ``ToolNotFound`` (10: no server of the backup's major, or an engine without a
    verifier), ``SandboxError``, ``Interrupted``. The disposable server and its
    directory are removed in every case."""
    interrupt.doing(f"verification of {job.name}")
    located = checked(locate_named(config, job, selector, target), job)
    m = located.manifest
    if m.engine not in ("postgres", "redis", "mysql"):
        raise ToolNotFound(
            f"verify of {m.engine} backups is not available: no disposable {m.engine} "
            "server is supported yet",
            hint="verify restores PostgreSQL, MySQL/MariaDB and Redis backups; restore "
            "this one with `dbcrate restore --to` into a scratch server")
    report = Report(job.name, m.id, located.target, m.engine)
    parent = _parent_dir(job)
    decoders(m, keys)  # missing key material fails before anything is read
    report.checks.append(integrity(located))
    if report.verdict.result != FAIL and m.engine == "redis":
        verify_redis(located, keys, report, parent)
        _key_drop(located, job, keys, report)
        _rto(report, job)
    elif report.verdict.result != FAIL and m.engine == "mysql":
        stats = _stats(located, keys)
        verify_mysql(located, job, keys, report, parent, stats)
        if report.verdict.result != FAIL or report.restore_seconds is not None:
            _row_drop(located, job, keys, report, stats)
            _rto(report, job)
    elif report.verdict.result != FAIL:
        _restore_and_check(located, job, keys, report, parent)
    _record(located, keys, report)
    return report


def _restore_and_check(located: Located, job: JobConfig, keys: KeyMaterial, report: Report,
                       parent: Path | None) -> None:
    m = located.manifest
    if os.geteuid() != 0:
        log.warning("the disposable server runs as this user, who can read the identity; "
                    "run verify as root to run it as the unprivileged dbcrate-sandbox user")
    with TempPostgres(_major(m.server_version), parent=parent) as pg:
        report.server = pg.version
        pg.create_database("dbcrate_verify")
        url = pg.url("dbcrate_verify")
        t0 = time.monotonic()
        owners = _globals(located, keys, report, pg)
        try:
            restored = pgverify.restore(str(pg.bin_dir / "pg_restore"), url, pg.password,
                                        plaintext(located, keys), owners=owners)
        except IntegrityError as e:
            report.checks.append(Check("pg_restore", FAIL, e.message))
            return
        report.restore_seconds = round(time.monotonic() - t0, 3)
        report.checks.append(
            Check("pg_restore", FAIL, f"{restored.errors} errors: {restored.detail}")
            if restored.errors else Check("pg_restore", PASS, "no errors"))
        stats = _stats(located, keys)
        with pgverify.connect(url, pg.password) as conn:
            report.checks += _database_checks(conn, report, job, stats)
    _row_drop(located, job, keys, report, stats)
    _rto(report, job)


def _globals(located: Located, keys: KeyMaterial, report: Report, pg: TempPostgres) -> bool:
    """Apply the backup's globals part (roles, tablespaces) to the disposable server if it
    has one; True if applied (restore then keeps owners and privileges). A globals script
    that fails (e.g. a tablespace directory this host lacks) is noted as ``skip`` and the
    restore falls back to ``--no-owner --no-privileges``."""
    if located.manifest.part("globals") is None:
        return False
    engine = open_engine("postgres", Connection(pg.url("postgres"), pg.password, {}))
    try:
        engine.restore_part("globals", plaintext(located, keys, part="globals"),
                            RestoreOptions(with_globals=True))
    except RestoreFailed as e:
        report.checks.append(Check("globals", SKIP, "not applied, restoring without owners: "
                                   + e.message.splitlines()[0]))
        return False
    pgverify.reset_password(str(pg.socket_dir), pg.port, pg.user, pg.password)
    report.checks.append(Check("globals", PASS, "roles applied first"))
    return True


def _key_drop(located: Located, job: JobConfig, keys: KeyMaterial, report: Report) -> None:
    """Redis: alarm when the keys fell more than ``verify_row_drop_alarm`` % versus the
    job's previous backup verified pass or alarm (its record holds the number)."""
    if report.keys is None or job.verify.row_drop_alarm <= 0:
        return
    m = located.manifest
    prev = records.latest_passing(records.read_records(located.storage, job.name),
                                  catalog.encode_time(m.started_at), records.mac_key(keys))
    before = prev.body.get("keys") if prev is not None else None
    if prev is None or not isinstance(before, int):
        report.checks.append(Check("row_drop", SKIP, "no earlier backup verified pass or "
                                   "alarm with a key count"))
        return
    report.previous = str(prev.body.get("backup_id"))
    drops = row_drops({"keys": report.keys}, {"keys": before}, job.verify.row_drop_alarm)
    report.checks.append(Check("row_drop", ALARM, drops[0]) if drops else Check(
        "row_drop", PASS, f"keys {before} -> {report.keys} since backup {report.previous}"))


def _record(located: Located, keys: KeyMaterial, report: Report) -> None:
    """Store the verdict's record in the target read from, chained to the newest one."""
    m, storage = located.manifest, located.storage
    manifest_raw = b"".join(storage.get(catalog.manifest_key(m.data_key)))
    v = report.verdict
    found = records.read_records(storage, report.job)
    fields = {
        "job": report.job, "backup_id": m.id, "target": report.target,
        "backup_started_at": catalog.encode_time(m.started_at), "engine": m.engine,
        "result": v.result, "failed_at": v.failed_at, "server": report.server,
        "backup_server_version": m.server_version, "dbcrate_version": __version__,
        "restore_seconds": report.restore_seconds,
        "manifest_sha256": hashlib.sha256(manifest_raw).hexdigest(),
        "object_sha256": m.stored.sha256,
        "checks": [{"kind": c.kind, "status": c.status,
                    **({"name": c.name} if c.name else {})} for c in report.checks],
        "tables_counted": len(report.tables),
        "large_objects": dict(report.large_objects),
        "compared_with": report.previous, "keys": report.keys,
    }
    rec = records.write_record(storage, m.data_key, fields, keys, found[-1] if found else None)
    report.record, report.record_sha256 = rec.key, rec.sha256


def _row_drop(located: Located, job: JobConfig, keys: KeyMaterial, report: Report,
              stats: dict[str, Any] | None) -> None:
    """Alarm when a table's backup-time rows (or the large objects) fell more than
    ``verify_row_drop_alarm`` % versus the job's previous backup verified pass or alarm."""
    if stats is None or job.verify.row_drop_alarm <= 0:
        return
    m, storage = located.manifest, located.storage
    found = records.read_records(storage, job.name)
    prev = records.latest_passing(found, catalog.encode_time(m.started_at),
                                  records.mac_key(keys))
    older = [x for x in manifests(storage, job.name)
             if prev is not None and x.id == prev.body.get("backup_id")]
    if not older or older[0].part("stats") is None:
        report.checks.append(Check("row_drop", SKIP, "no earlier backup verified pass or "
                                   "alarm with backup-time counts"))
        return
    before = _stats(Located(older[0], located.target, storage), keys) or {"tables": []}
    report.previous = older[0].id
    old = {f"{t['schema']}.{t['table']}": int(t["rows"]) for t in before["tables"]}
    new = {f"{t['schema']}.{t['table']}": int(t["rows"]) for t in stats["tables"]}
    for entry in report.tables:
        entry["previous"] = old.get(f"{entry['schema']}.{entry['table']}")
    if before.get("large_objects") is not None and stats.get("large_objects") is not None:
        old["(large objects)"] = int(before["large_objects"])
        new["(large objects)"] = int(stats["large_objects"])
    drops = row_drops(new, old, job.verify.row_drop_alarm)
    report.checks.append(
        Check("row_drop", ALARM, "; ".join(drops)) if drops else
        Check("row_drop", PASS, f"no table fell more than {job.verify.row_drop_alarm:g}% "
              f"since backup {older[0].id}"))


def _stats(located: Located, keys: KeyMaterial) -> dict[str, Any] | None:
    """The backup's ``stats`` part (decrypted, digest-checked), None if it has none.
    Raises ``ManifestError`` for a part that is not the JSON dbcrate writes."""
    if located.manifest.part("stats") is None:
        return None
    body = b"".join(plaintext(located, keys, part="stats"))
    try:
        value = json.loads(body)
        assert isinstance(value, dict) and isinstance(value["tables"], list)
        return value
    except (ValueError, AssertionError, KeyError):
        raise ManifestError(f"the stats part of backup {located.manifest.id} is not "
                            "readable JSON") from None


def _row_counts(counts: dict[tuple[str, str], int], stats: dict[str, Any] | None,
                report: Report, restored_los: int) -> Check:
    """Rows per table and large objects against the backup-time counts."""
    report.large_objects["restored"] = restored_los
    if stats is None:
        return Check("row_counts", SKIP, f"{len(counts)} tables restored; the backup holds "
                     "no backup-time counts (made before the stats part existed)")
    wrong: list[str] = []
    for t in stats["tables"]:
        key = (str(t["schema"]), str(t["table"]))
        got = counts.get(key)
        report.tables.append({"schema": key[0], "table": key[1], "expected": t["rows"],
                              "restored": got, "previous": None})
        if got != t["rows"]:
            wrong.append(f"{key[0]}.{key[1]}: {t['rows']} at backup time, {got} restored")
    expected_los = stats.get("large_objects")
    report.large_objects["expected"] = expected_los
    if expected_los is not None and expected_los != restored_los:
        wrong.append(f"large objects: {expected_los} at backup time, {restored_los} restored")
    if wrong:
        return Check("row_counts", FAIL, "; ".join(wrong))
    return Check("row_counts", PASS, f"{len(stats['tables'])} tables and {restored_los} "
                 "large objects as counted at backup time")


def _database_checks(conn: Any, report: Report, job: JobConfig,
                     stats: dict[str, Any] | None) -> list[Check]:
    out: list[Check] = []
    counts = pgverify.row_counts(conn)
    out.append(_row_counts(counts, stats, report, pgverify.large_objects(conn)))
    checked_n, orphans = pgverify.foreign_keys(conn)
    out.append(Check("foreign_keys", FAIL if orphans else PASS,
                     "; ".join(orphans) if orphans else f"{checked_n} foreign keys valid"))
    am = pgverify.amcheck(conn)
    if am is None:
        out.append(Check("amcheck", SKIP, "the server has no amcheck extension"))
    else:
        n, bad = am
        out.append(Check("amcheck", FAIL if bad else PASS,
                         "; ".join(bad) if bad else f"{n} B-tree indexes intact"))
    for uc in job.verify.checks:
        try:
            rows = pgverify.run_query(conn, uc.sql, round(job.verify.check_timeout * 1000))
        except DbcrateError:
            raise
        except Exception as e:  # psycopg.Error: the server's message
            problem: str | None = str(e).strip().splitlines()[0]
        else:
            problem = user_check(uc.kind, uc.expected, rows)
        status = PASS if problem is None else uc.severity
        out.append(Check("sql", status, problem or "met", name=uc.name))
    return out


def _rto(report: Report, job: JobConfig) -> None:
    limit, took = job.verify.rto_alarm, report.restore_seconds
    if limit is None or took is None:
        return
    over = took > limit
    report.checks.append(Check("rto", "alarm" if over else PASS,
                               f"restore took {took:.1f}s, alarm above {limit:.0f}s"))


def run_history(config: Config, job: JobConfig, *, days: int = 14, target: str | None = None,
                keys: KeyMaterial | None = None,
                known: Sequence[tuple[str, str]] = ()) -> dict[str, Any]:
    """The job's verification history on ``target`` (default: its first target) from
    records only: ``days`` (oldest first, today UTC last), ``last``, ``chain``
    (``ok``|``broken``) and ``broken_at``. With ``keys`` every record's and the head
    pointer's MAC is checked too; ``known`` (``(record key, sha256)`` this host wrote)
    must still be stored unless pruned with their backup. Raises storage errors; reads
    records, the head pointer and the manifests' keys only."""
    if days < 1:
        raise UsageError("--days must be at least 1")
    name = target or job.targets[0]
    storage = open_target(config.target(name))
    found = records.read_records(storage, job.name)
    secret = records.mac_key(keys) if keys else None
    stored = {o.key for o in storage.list(f"{job.name}/") if catalog.is_manifest(o.key)}
    chain = records.check_chain(found, secret, stored)
    if chain.ok:
        chain = records.check_head(records.read_head(storage, job.name), found, secret, stored)
    if chain.ok:
        chain = records.check_known(known, found, stored)
    last = found[-1] if found else None
    return {
        "job": job.name, "target": name, "days": records.history(found, days),
        "last": None if last is None else {
            "backup_id": last.body.get("backup_id"), "result": last.result,
            "verified_at": last.verified_at, "record": last.key},
        "chain": "ok" if chain.ok else "broken", "broken_at": chain.broken_at,
        "broken_why": chain.why or None, "mac_checked": keys is not None,
    }
