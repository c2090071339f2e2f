"""One run of one job inside the agent: backup, then (only after a success) retention,
with audit records, the run's row in the state DB and notifications."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from dbcrate import interrupt, notify
from dbcrate.agent.logs import event
from dbcrate.agent.state import StateDB
from dbcrate.audit import AuditError, AuditLog
from dbcrate.config import Config, JobConfig
from dbcrate.errors import DbcrateError
from dbcrate.operations.backup import BackupResult, run_backup
from dbcrate.operations.prune import run_prune

#: a backup that starts this far in the future means a wrong clock: prune deletes nothing
FUTURE_SLACK = timedelta(minutes=5)


@dataclass
class Outcome:
    result: str  # ok | failed | interrupted
    backup_id: str | None = None
    size: int | None = None
    error: str | None = None
    hint: str | None = None


def audit_quietly(log: AuditLog, ev: str, **fields: object) -> None:
    """Append to the audit log; a failure to do so is logged, never raised."""
    try:
        log.append(ev, **fields)
    except (AuditError, DbcrateError) as exc:
        event(logging.ERROR, f"audit log: {exc.message}", ev=ev)


def _backup(config: Config, job: JobConfig) -> tuple[Outcome, BackupResult | None]:
    try:
        res = run_backup(config, job)
    except KeyboardInterrupt:
        return Outcome("interrupted", error="aborted after the grace period"), None
    except DbcrateError as exc:
        if interrupt.interrupted() is not None:
            return Outcome("interrupted", error="aborted after the grace period"), None
        return Outcome("failed", error=exc.message, hint=exc.hint), None
    except Exception as exc:  # a bug must not kill the agent; it is logged and recorded
        logging.getLogger("dbcrate.agent").exception("internal error in job %s", job.name)
        return Outcome("failed", error=f"internal error: {type(exc).__name__}"), None
    m = res.manifest
    if res.ok and m is not None:
        return Outcome("ok", backup_id=m.id, size=m.stored.size), res
    first = next(iter(res.failures.values()))
    return Outcome("failed", backup_id=m.id if m else None, size=m.stored.size if m else None,
                   error="; ".join(f"target {t}: {e.message}" for t, e in res.failures.items()),
                   hint=first.hint), res


def run_job(config: Config, db: StateDB, log: AuditLog, job: JobConfig, trigger: str,
            slot: datetime | None, run_id: int) -> Outcome:
    """Run ``job`` once, recording everything; never raises for a job's failure.

    The slot is marked handled when the run ends ok or failed; an interrupted run
    leaves it unhandled, so the next start catches it up."""
    event(logging.INFO, f"backup of {job.name} starts ({trigger})", job=job.name,
          ev="backup.start")
    audit_quietly(log, "backup.start", job=job.name, trigger=trigger)
    out, res = _backup(config, job)
    if res is not None:
        for copy in res.copies:
            audit_quietly(log, "backup.ok", job=job.name, trigger=trigger,
                          backup_id=out.backup_id, target=copy.target, size=copy.size)
        for target, exc in res.failures.items():
            audit_quietly(log, "backup.fail", job=job.name, trigger=trigger, target=target,
                          error=exc.message)
    elif out.result == "failed" or out.result == "interrupted":
        audit_quietly(log, "backup.fail", job=job.name, trigger=trigger, error=out.error)
    now = datetime.now(UTC)
    db.finish(run_id, out.result, now, backup_id=out.backup_id, size=out.size, error=out.error)
    if slot is not None and out.result in ("ok", "failed"):
        db.handled(job.name, slot)
    level = logging.INFO if out.result == "ok" else logging.ERROR
    detail = f"backup {out.backup_id}, {out.size} bytes" if out.result == "ok" else out.error
    event(level, f"backup of {job.name} {out.result}: {detail}", job=job.name,
          ev="backup.ok" if out.result == "ok" else "backup.fail")
    if out.result == "ok":
        prune(config, log, job, now)
    if out.result != "interrupted":
        msg = (notify.success(job.name, out.backup_id or "", out.size or 0, job.targets)
               if out.result == "ok" else notify.failure(job.name, out.error or "", out.hint))
        send(config, log, msg)
    return out


def send(config: Config, log: AuditLog, msg: notify.Message) -> None:
    """Notify; each failed delivery is audited (``notify.fail``), never raised."""
    for name in notify.send(config.notify, msg):
        audit_quietly(log, "notify.fail", job=msg.job, target=name,
                      error=f"{msg.event} notification could not be delivered")


def prune(config: Config, log: AuditLog, job: JobConfig, now: datetime) -> None:
    """Apply the job's retention; delete nothing if a backup starts in the future."""
    try:
        plans = run_prune(config, job, dry_run=True, now=now)
        future = [d.manifest.id for r in plans for d in r.decisions
                  if d.manifest.started_at > now + FUTURE_SLACK]
        if future:
            event(logging.WARNING, f"retention of {job.name} skipped: backup {future[0]} "
                  "starts more than 5 minutes in the future (is a clock wrong?); nothing "
                  "deleted", job=job.name, ev="retain.skip")
            return
        for report in run_prune(config, job, now=now):
            for backup_id in report.deleted:
                audit_quietly(log, "retain.delete", job=job.name, backup_id=backup_id,
                              target=report.target)
            for exc in report.errors:
                event(logging.WARNING, f"retention of {job.name} on {report.target}: "
                      f"{exc.message}", job=job.name, ev="retain.delete")
    except DbcrateError as exc:
        event(logging.WARNING, f"retention of {job.name}: {exc.message}", job=job.name,
              ev="retain.delete")
