"""Cron schedules and durations: pure functions, no I/O (docs/agent.md).

A schedule is a 5-field cron expression (``minute hour day month weekday``), the same
with a leading seconds field (6 fields, so tests can tick in seconds), or an alias
(``@hourly``, ``@daily``/``@midnight``, ``@weekly``, ``@monthly``, ``@yearly``/
``@annually``). Slots are computed in the job's time zone by cronsim, which is correct
across DST: on a fall-back night ``30 2 * * *`` fires once, on a spring-forward night a
slot in the missing hour fires at 03:00, and ``0 * * * *`` fires at both 02:00s.
All returned times are aware and in UTC.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}

_DURATION = re.compile(r"(\d+)([smhd])")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class ScheduleProblem(ValueError):
    """A cron expression, time zone or duration that cannot be used (the message says
    why; the config layer adds file and key)."""


def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``. Raises ``ScheduleProblem`` for an unknown zone."""
    try:
        if not name or name != name.strip() or name.startswith("/") or ".." in name:
            raise ValueError(name)
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ScheduleProblem(f"unknown time zone {name!r}") from None


def parse_duration(text: str) -> timedelta:
    """``N`` followed by ``s``, ``m``, ``h`` or ``d`` (``90s``, ``10m``, ``26h``, ``7d``).
    Raises ``ScheduleProblem``."""
    m = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise ScheduleProblem(f"invalid duration {text!r} (expected N followed by s, m, h "
                              "or d, e.g. 10m or 26h)")
    return timedelta(seconds=int(m.group(1)) * _UNIT[m.group(2)])


def format_duration(d: timedelta) -> str:
    """The shortest ``N<unit>`` form of ``d`` (inverse of :func:`parse_duration`)."""
    seconds = int(d.total_seconds())
    for unit in ("d", "h", "m"):
        if seconds and seconds % _UNIT[unit] == 0:
            return f"{seconds // _UNIT[unit]}{unit}"
    return f"{seconds}s"


@dataclass(frozen=True)
class Schedule:
    """A validated cron expression in a time zone."""

    expr: str
    tz: str = "UTC"

    def __post_init__(self) -> None:
        """Raises ``ScheduleProblem`` for a bad expression or zone."""
        zone(self.tz)
        self._sim(datetime(2000, 1, 1, tzinfo=UTC))

    @property
    def cron(self) -> str:
        """The expression cronsim reads (an alias expanded)."""
        return ALIASES.get(self.expr.strip().lower(), self.expr.strip())

    def _sim(self, at: datetime, *, reverse: bool = False) -> CronSim:
        fields = self.cron.split()
        if self.expr.strip().startswith("@") and self.expr.strip().lower() not in ALIASES:
            raise ScheduleProblem(f"unknown schedule alias {self.expr!r} (known: "
                                  f"{', '.join(ALIASES)})")
        if len(fields) not in (5, 6):
            raise ScheduleProblem(f"invalid cron expression {self.expr!r}: expected 5 fields "
                                  f"(or 6 with leading seconds), got {len(fields)}")
        try:
            return CronSim(" ".join(fields), at.astimezone(zone(self.tz)), reverse=reverse)
        except CronSimError as exc:
            raise ScheduleProblem(f"invalid cron expression {self.expr!r}: "
                                  f"{str(exc).lower()}") from None

    def after(self, t: datetime) -> Iterator[datetime]:
        """The slots strictly after ``t``, in order, as UTC times."""
        for slot in self._sim(t):
            yield slot.astimezone(UTC)

    def next(self, t: datetime) -> datetime | None:
        """The first slot strictly after ``t`` (None if there is none)."""
        return next(self.after(t), None)

    def next_runs(self, t: datetime, n: int) -> list[datetime]:
        """The first ``n`` slots strictly after ``t``."""
        out: list[datetime] = []
        for slot in self.after(t):
            out.append(slot)
            if len(out) == n:
                break
        return out

    def latest(self, t: datetime) -> datetime | None:
        """The latest slot at or before ``t`` (None if there is none)."""
        # cronsim's reverse walk is strictly before its start; slots are whole seconds
        start = t.replace(microsecond=0) + timedelta(seconds=1)
        try:
            slot = next(self._sim(start, reverse=True))
        except StopIteration:
            return None
        return slot.astimezone(UTC)
