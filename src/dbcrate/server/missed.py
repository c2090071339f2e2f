"""Which scheduled jobs missed a slot, from what agents report (pure): a job whose
latest cron slot (older than ``grace``, after the agent enrolled) has no run that
finished after it counts as missed. The dashboard shows it; the watcher audits
``backup.missed`` once per slot."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from dbcrate.schedule import Schedule
from dbcrate.server.models import Agent


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _parse(text: Any) -> datetime | None:
    if not isinstance(text, str) or not text:
        return None
    try:
        return _aware(datetime.fromisoformat(text.replace("Z", "+00:00")))
    except ValueError:
        return None


def missed_slot(job: dict[str, Any], result: dict[str, Any] | None, since: datetime,
                now: datetime, grace: timedelta) -> datetime | None:
    """The slot ``job`` missed (None if none). Bad schedules count as not missed."""
    expr = job.get("schedule")
    if not isinstance(expr, str) or not expr:
        return None
    try:
        latest = Schedule(expr, str(job.get("timezone") or "UTC")).latest(now - grace)
    except Exception:  # an agent-reported schedule we cannot read is not ours to judge
        return None
    if latest is None or latest <= since:
        return None
    finished = _parse((result or {}).get("finished_at"))
    return latest if finished is None or finished < latest else None


def job_rows(agent: Agent, online: bool, grace: timedelta,
             now: datetime | None = None) -> list[dict[str, Any]]:
    """One dashboard row per job the agent reported."""
    now = now or datetime.now(UTC)
    hb: dict[str, Any] = dict(agent.heartbeat or {})
    results: dict[str, Any] = hb.get("results") or {}
    jobs: list[Any] = hb.get("jobs") or []
    rows = []
    for job in jobs:
        if not isinstance(job, dict):
            continue
        name = str(job.get("name"))
        result = results.get(name)
        rows.append({"agent": agent.name, "job": name, "engine": job.get("engine"),
                     "last": result, "next_run": job.get("next_run"), "online": online,
                     "missed": missed_slot(job, result, _aware(agent.enrolled_at), now, grace)})
    return rows
