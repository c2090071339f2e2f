"""Retention with hourly and yearly (pure): a golden file over two years of daily
backups, and a property test that the newest backup is always kept."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from dbcrate.config import Retention
from dbcrate.retention import plan
from tests.lib.retention import backup

GOLDEN = Path(__file__).with_name("golden") / "retention_two_years.txt"
POLICY = Retention(hourly=3, daily=7, weekly=4, monthly=12, yearly=5)


def render() -> str:
    start = datetime(2025, 1, 1, 3, 0, tzinfo=UTC)
    backups = [backup(start + timedelta(days=d)) for d in range(730)]
    # three extra backups on the last day, an hour apart, for the hourly rule
    backups += [backup(start + timedelta(days=729, hours=h)) for h in (1, 2, 3)]
    decisions = plan(backups, POLICY, now=start + timedelta(days=730))
    lines = [f"policy: {POLICY}", f"backups: {len(backups)}",
             f"kept: {sum(d.keep for d in decisions)}"]
    for d in decisions:
        if d.keep:
            when = d.manifest.started_at.strftime("%Y-%m-%dT%H:%MZ")
            lines.append(f"{when}  {', '.join(d.reasons)}")
    return "\n".join(lines) + "\n"


def test_two_years_of_daily_backups_match_the_golden_file() -> None:
    text = render()
    if os.environ.get("UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


@settings(max_examples=200, deadline=None)
@given(
    offsets=st.lists(st.integers(min_value=0, max_value=3 * 365 * 24 * 3600), min_size=1,
                     max_size=40),
    counts=st.tuples(*[st.one_of(st.none(), st.integers(0, 10)) for _ in range(6)]),
)
def test_the_newest_backup_is_always_kept(
    offsets: list[int], counts: tuple[int | None, ...]
) -> None:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    backups = [backup(start + timedelta(seconds=s)) for s in offsets]
    hourly, daily, weekly, monthly, yearly, days = counts
    policy = Retention(hourly=hourly, daily=daily, weekly=weekly, monthly=monthly,
                       yearly=yearly, days=days)
    decisions = plan(backups, policy, now=start + timedelta(days=4 * 365))
    newest = max(b.started_at for b in backups)
    assert decisions[0].manifest.started_at == newest
    assert decisions[0].keep
    assert "newest" in decisions[0].reasons
