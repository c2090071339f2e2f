"""schedule.py: cron slots in a zone across DST, aliases, durations, bad input (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from dbcrate.schedule import Schedule, ScheduleProblem, parse_duration

BERLIN = ZoneInfo("Europe/Berlin")


def local(slots: list[datetime], tz: ZoneInfo = BERLIN) -> list[str]:
    return [s.astimezone(tz).isoformat() for s in slots]


def at(*args: int) -> datetime:
    return datetime(*args, tzinfo=BERLIN)  # type: ignore[misc]


@pytest.mark.parametrize(("expr", "start", "expected"), [
    # fall-back night 2026-10-25: 02:30 exists twice, fires once
    ("30 2 * * *", at(2026, 10, 24, 12), ["2026-10-25T02:30:00+02:00",
                                          "2026-10-26T02:30:00+01:00"]),
    # spring-forward night 2026-03-29: 02:30 does not exist, fires at 03:00
    ("30 2 * * *", at(2026, 3, 28, 12), ["2026-03-29T03:00:00+02:00",
                                         "2026-03-30T02:30:00+02:00"]),
    # hourly fires at both 02:00s on the fall-back night
    ("0 * * * *", at(2026, 10, 25, 0, 30), ["2026-10-25T01:00:00+02:00",
                                            "2026-10-25T02:00:00+02:00",
                                            "2026-10-25T02:00:00+01:00",
                                            "2026-10-25T03:00:00+01:00"]),
    # day 31 only in months that have it
    ("0 3 31 * *", at(2026, 1, 1), ["2026-01-31T03:00:00+01:00", "2026-03-31T03:00:00+02:00",
                                    "2026-05-31T03:00:00+02:00"]),
    # Sunday as 0 and as 7
    ("0 3 * * 0", at(2026, 12, 1), ["2026-12-06T03:00:00+01:00", "2026-12-13T03:00:00+01:00"]),
    ("0 3 * * 7", at(2026, 12, 1), ["2026-12-06T03:00:00+01:00", "2026-12-13T03:00:00+01:00"]),
    ("@daily", at(2026, 12, 1, 12), ["2026-12-02T00:00:00+01:00"]),
    ("@weekly", at(2026, 12, 1, 12), ["2026-12-06T00:00:00+01:00"]),
    # 6 fields: leading seconds
    ("*/20 * * * * *", at(2026, 12, 1, 12, 0, 5), ["2026-12-01T12:00:20+01:00",
                                                   "2026-12-01T12:00:40+01:00",
                                                   "2026-12-01T12:01:00+01:00"]),
])
def test_slots(expr: str, start: datetime, expected: list[str]) -> None:
    sched = Schedule(expr, "Europe/Berlin")
    slots = sched.next_runs(start, len(expected))
    assert local(slots) == expected
    assert all(s.tzinfo == UTC for s in slots)


def test_fall_back_night_fires_once_in_a_day() -> None:
    sched = Schedule("30 2 * * *", "Europe/Berlin")
    day = [s for s in sched.next_runs(at(2026, 10, 24), 5)
           if s.astimezone(BERLIN).date().isoformat() == "2026-10-25"]
    assert len(day) == 1


def test_latest_is_at_or_before() -> None:
    sched = Schedule("0 3 * * *", "UTC")
    t = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    assert sched.latest(t) == t
    assert sched.latest(t - timedelta(seconds=1)) == t - timedelta(days=1)
    assert sched.next(t) == t + timedelta(days=1)


@pytest.mark.parametrize(("expr", "tz", "needle"), [
    ("61 * * * *", "UTC", "invalid cron expression"),
    ("* * *", "UTC", "expected 5 fields"),
    ("* * * * * * *", "UTC", "expected 5 fields"),
    ("0 3 * * 8", "UTC", "invalid cron expression"),
    ("@fortnightly", "UTC", "unknown schedule alias"),
    ("0 3 * * *", "Mars/Olympus", "unknown time zone 'Mars/Olympus'"),
    ("0 3 * * *", "../../etc/passwd", "unknown time zone"),
    ("0 3 * * *", "", "unknown time zone"),
])
def test_bad_expressions_and_zones(expr: str, tz: str, needle: str) -> None:
    with pytest.raises(ScheduleProblem) as exc:
        Schedule(expr, tz)
    assert needle in str(exc.value)


@pytest.mark.parametrize(("text", "seconds"), [
    ("0s", 0), ("90s", 90), ("10m", 600), ("26h", 93600), ("7d", 604800)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["", "10", "1.5h", "-3m", "10 m", "3w", "h"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ScheduleProblem, match="invalid duration"):
        parse_duration(text)
