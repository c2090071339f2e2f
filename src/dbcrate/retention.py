"""Retention policy: which backups to keep, and why. Pure functions, no I/O.

GFS rules count calendar buckets (UTC hours, days, ISO weeks, months, years) that hold backups: with
``daily = 7`` the newest backup of each of the 7 most recent days *that have backups* is
kept (so a host that was down for a week does not lose its history); likewise
``hourly``, ``weekly``, ``monthly`` and ``yearly``. ``days = N`` keeps every backup
started in the last N days.
The newest backup is always kept. A policy with no rule at all keeps everything.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from dbcrate.config import Retention
from dbcrate.model import Manifest


@dataclass(frozen=True)
class Decision:
    """Keep or delete one backup, with the rules that keep it."""

    manifest: Manifest
    keep: bool
    reasons: tuple[str, ...] = field(default=())


def _hour(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%dT%H")


def _year(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y")


def _day(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m-%d")


def _week(t: datetime) -> str:
    year, week, _ = t.astimezone(UTC).isocalendar()
    return f"{year}-W{week:02d}"


def _month(t: datetime) -> str:
    return t.astimezone(UTC).strftime("%Y-%m")


_BUCKETS: dict[str, Callable[[datetime], str]] = {
    "hourly": _hour,
    "daily": _day,
    "weekly": _week,
    "monthly": _month,
    "yearly": _year,
}


def is_keep_all(policy: Retention) -> bool:
    """True when the policy sets no rule (keep backups indefinitely)."""
    return all(v is None for v in (policy.hourly, policy.daily, policy.weekly, policy.monthly,
                                   policy.yearly, policy.days))


def plan(manifests: Sequence[Manifest], policy: Retention, now: datetime) -> list[Decision]:
    """Decide for each complete backup of one job whether it is kept, newest first.

    Incomplete backups (status other than ``complete``) are never touched here.
    """
    backups = sorted(
        (m for m in manifests if m.status == "complete"),
        key=lambda m: (m.started_at, m.id),
        reverse=True,
    )
    reasons: dict[str, list[str]] = {m.id: [] for m in backups}
    if backups:
        reasons[backups[0].id].append("newest")
    if is_keep_all(policy):
        for m in backups:
            reasons[m.id].append("no retention rule: kept indefinitely")
    for rule, bucket_of in _BUCKETS.items():
        count = getattr(policy, rule)
        if not count:
            continue
        seen: set[str] = set()
        for m in backups:
            bucket = bucket_of(m.started_at)
            if bucket in seen:
                continue
            if len(seen) >= count:
                break
            seen.add(bucket)
            reasons[m.id].append(f"{rule} {bucket}")
    if policy.days is not None:
        cutoff = now - timedelta(days=policy.days)
        for m in backups:
            if m.started_at >= cutoff:
                reasons[m.id].append(f"within {policy.days} days")
    return [Decision(m, bool(reasons[m.id]), tuple(reasons[m.id])) for m in backups]
