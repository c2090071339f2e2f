"""Apply a job's retention policy to each of its targets."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from dbcrate import catalog, retention
from dbcrate.config import Config, JobConfig
from dbcrate.config.pitr import is_physical
from dbcrate.errors import DbcrateError
from dbcrate.model import Manifest
from dbcrate.operations import leftovers, records
from dbcrate.operations.authn import policy, sig_key
from dbcrate.operations.listing import Skipped, trusted
from dbcrate.operations.pitr.prune import prune_wal
from dbcrate.storage import Storage, open_target

log = logging.getLogger("dbcrate.prune")


@dataclass
class PruneReport:
    """What prune decided (and, unless dry-run, did) on one target for one job."""

    job: str
    target: str
    decisions: list[retention.Decision] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    errors: list[DbcrateError] = field(default_factory=list)
    aborted_uploads: int = 0
    #: manifests neither kept nor deleted: unreadable or not trusted (key, why)
    ignored: Skipped = field(default_factory=list)
    #: WAL files (physical jobs) older than the oldest kept base: deleted (or, dry, not)
    wal: list[str] = field(default_factory=list)


def run_prune(
    config: Config,
    job: JobConfig,
    *,
    target: str | None = None,
    dry_run: bool = False,
    now: datetime | None = None,
) -> list[PruneReport]:
    """Delete the backups of ``job`` its retention policy does not keep, per target.

    A backup is removed manifest first (so it leaves the catalog at once), then its data
    objects; an object that cannot be deleted is reported and left as an orphan, which
    is never listed. ``dry_run`` decides and reports but deletes nothing. A target that
    cannot be read is reported in its ``errors``; other targets go on.

    Only manifests that pass the job's authentication policy count: one that cannot be
    read, is unsigned while trusted signers are configured, or fails its HMAC is neither
    kept nor deleted (never deleted, nor its objects) and is listed in ``ignored``.
    """
    now = now or datetime.now(UTC)
    pol = policy(job)
    reports = []
    for name in [target] if target else job.targets:
        report = PruneReport(job=job.name, target=name)
        reports.append(report)
        try:
            storage = open_target(config.target(name))
            good = [m for m, _ in trusted(storage, job.name, lambda _: pol, report.ignored)]
            report.decisions = retention.plan(good, job.retention, now)
        except DbcrateError as exc:
            report.errors.append(exc)
            continue
        if not dry_run:
            for decision in report.decisions:
                if not decision.keep:
                    _delete(storage, decision.manifest, report)
        if is_physical(job):  # WAL before the oldest kept base (docs/pitr.md)
            try:
                report.wal = prune_wal(storage, job.name, [
                    d.manifest for d in report.decisions if d.keep], dry_run=dry_run)
            except DbcrateError as exc:
                report.errors.append(exc)
        if dry_run:
            continue
        report.aborted_uploads = _abort_stale(storage, job.name, report)
    return reports


def _delete(storage: Storage, m: Manifest, report: PruneReport) -> None:
    mkey = catalog.manifest_key(m.data_key)
    try:  # its verification records go with it (docs/verify.md)
        verified = records.records_of(storage, m.data_key)
    except DbcrateError as exc:
        report.errors.append(exc)
        return
    keys = [mkey, sig_key(mkey), m.data_key, *(p.key for p in m.parts), *verified]
    for key in keys:
        try:
            storage.delete(key)
        except DbcrateError as exc:
            report.errors.append(exc)
            if key == keys[0]:
                return  # the manifest is still there: the backup stays whole
            log.warning("%s: %s left as an orphan: %s", report.target, key, exc)
    report.deleted.append(m.id)


def _abort_stale(storage: Storage, job: str, report: PruneReport) -> int:
    """Remove what killed runs left behind (multipart uploads, temp files) older than
    the safe age (``operations.leftovers``)."""
    try:
        return leftovers.sweep(storage, job)
    except DbcrateError as exc:
        report.errors.append(exc)
        return 0
