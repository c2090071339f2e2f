"""What ``dbcrate status`` and the metrics file report: per job, the next slot, the last
run, the last success and whether ``max_age`` is exceeded; and whether an agent runs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbcrate.agent import lock, verifying
from dbcrate.agent.state import FILE_NAME, Run, StateDB
from dbcrate.config import Config, JobConfig
from dbcrate.schedule import Schedule, format_duration

#: ``dbcrate status`` exit code when a job's last run failed or it is overdue
UNHEALTHY = 12


def rfc3339(t: datetime | None) -> str | None:
    if t is None:
        return None
    return t.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def job_zone(config: Config, job: JobConfig) -> str:
    return job.timezone or config.agent.timezone


def next_run(config: Config, job: JobConfig, now: datetime) -> datetime | None:
    if not job.schedule:
        return None
    return Schedule(job.schedule, job_zone(config, job)).next(now)


def exceeded(job: JobConfig, success: Run | None, now: datetime) -> bool:
    """True when ``job`` has a ``max_age`` and no success finished within it."""
    if job.max_age is None:
        return False
    if success is None or success.finished_at is None:
        return True
    return now - success.finished_at > job.max_age


def _run_doc(run: Run) -> dict[str, Any]:
    return {"trigger": run.trigger, "started_at": rfc3339(run.started_at),
            "finished_at": rfc3339(run.finished_at), "result": run.result,
            "backup_id": run.backup_id, "size": run.size, "error": run.error}


def open_state(state_dir: Path) -> StateDB | None:
    """The state DB if it exists (None before the first agent or audited command)."""
    if not (state_dir / FILE_NAME).exists():
        return None
    return StateDB(state_dir, create=False)


def status(config: Config, now: datetime | None = None) -> dict[str, Any]:
    """The ``dbcrate status --json`` document (docs/agent.md)."""
    now = now or datetime.now(UTC)
    state_dir = config.agent.state_path
    pid = lock.holder(state_dir)
    db = open_state(state_dir)
    jobs = []
    try:
        for job in config.jobs.values():
            last = db.last_run(job.name) if db else None
            success = db.last_success(job.name) if db else None
            jobs.append({
                "job": job.name, "schedule": job.schedule, "timezone": job_zone(config, job),
                "next_run": rfc3339(next_run(config, job, now)),
                "last_run": _run_doc(last) if last else None,
                "last_success": None if success is None else {
                    "finished_at": rfc3339(success.finished_at),
                    "backup_id": success.backup_id, "size": success.size},
                "max_age": format_duration(job.max_age) if job.max_age else None,
                "max_age_exceeded": exceeded(job, success, now),
                "verify": _verify_doc(config, job, now),
            })
    finally:
        if db:
            db.close()
    return {"agent": {"running": pid is not None, "pid": pid or None}, "jobs": jobs}


def healthy(doc: dict[str, Any]) -> bool:
    """False if a job's last run failed, a job's max_age is exceeded or its last
    verification's verdict was fail or alarm."""
    for job in doc["jobs"]:
        last = job["last_run"]
        if job["max_age_exceeded"] or (last is not None and last["result"] == "failed"):
            return False
        checked = job["verify"]["last"]
        if checked is not None and checked["result"] in verifying.UNHEALTHY_RESULTS:
            return False
    return True


def _verify_doc(config: Config, job: JobConfig, now: datetime) -> dict[str, Any]:
    """A job's ``verify``: ``next_run`` (its ``verify_schedule``), ``last`` and ``days``
    (14, oldest first) from this state dir's verifications."""
    expr = job.verify.schedule
    nxt = Schedule(expr, job_zone(config, job)).next(now) if expr else None
    last, days = verifying.status_of(config.agent.state_path, job.name, now.date())
    if last is not None:
        last["finished_at"] = rfc3339(last["finished_at"])
    return {"schedule": expr, "next_run": rfc3339(nxt), "last": last, "days": days}
