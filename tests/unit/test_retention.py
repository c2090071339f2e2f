"""Retention policy (pure unit tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from dbcrate.config import Retention
from dbcrate.retention import plan
from tests.lib.retention import backup

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


def kept(decisions: list) -> list[datetime]:  # type: ignore[type-arg]
    return sorted(d.manifest.started_at for d in decisions if d.keep)


def test_daily_keeps_newest_per_day_for_days_with_backups() -> None:
    # two backups a day for 10 days, with a 5-day gap (host down) in the middle
    days = [0, 1, 2, 8, 9, 10, 11, 12, 13, 14]
    ms = [backup(NOW - timedelta(days=d, hours=h)) for d in days for h in (1, 7)]
    decisions = plan(ms, Retention(daily=7), NOW)
    assert kept(decisions) == sorted(NOW - timedelta(days=d, hours=1) for d in days[:7])
    reasons = {d.manifest.started_at: d.reasons for d in decisions}
    assert reasons[NOW - timedelta(hours=1)] == ("newest", "daily 2026-11-21")


def test_gfs_default_over_a_year() -> None:
    ms = [backup(NOW - timedelta(days=d)) for d in range(400)]
    decisions = plan(ms, Retention(daily=7, weekly=4, monthly=12), NOW)
    keep = [d for d in decisions if d.keep]
    # 7 daily + up to 4 weekly + 12 monthly, with overlaps between the rules
    assert 7 + 12 <= len(keep) <= 7 + 4 + 12
    months = {d.manifest.started_at.strftime("%Y-%m") for d in keep}
    assert len(months) == 12
    assert all(d.keep for d in decisions[:7])
    assert not any(d.keep for d in decisions if d.manifest.started_at < NOW - timedelta(days=370))


def test_retention_days_and_keep_all() -> None:
    ms = [backup(NOW - timedelta(days=d)) for d in range(40)]
    assert len(kept(plan(ms, Retention(days=30), NOW))) == 31
    assert all(d.keep for d in plan(ms, Retention(), NOW))


def test_newest_is_always_kept_and_incomplete_untouched() -> None:
    old = backup(NOW - timedelta(days=100))
    partial = backup(NOW, status="running")
    decisions = plan([old, partial], Retention(days=7), NOW)
    assert [(d.manifest.id, d.keep) for d in decisions] == [(old.id, True)]
    assert decisions[0].reasons == ("newest",)
