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

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from cronsim import CronSim, CronSimError

from dbcrate.config.timing import (
    ALIASES,
    ScheduleProblem,
    cron_expr,
    format_duration,
    parse_duration,
    zone,
)

__all__ = ["ALIASES", "Schedule", "ScheduleProblem", "format_duration", "parse_duration",
           "zone"]


@dataclass(frozen=True)
class Schedule:
    """A validated cron expression in a time zone."""

    expr: str
    tz: str = "UTC"

    def __post_init__(self) -> None:
        """Raises ``ScheduleProblem`` for a bad expression or zone."""
        zone(self.tz)
        cron_expr(self.expr)

    @property
    def cron(self) -> str:
        """The expression cronsim reads (an alias expanded)."""
        return cron_expr(self.expr)

    def _sim(self, at: datetime, *, reverse: bool = False) -> CronSim:
        try:
            return CronSim(self.cron, at.astimezone(zone(self.tz)), reverse=reverse)
        except CronSimError as exc:  # validated already; kept for safety
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
