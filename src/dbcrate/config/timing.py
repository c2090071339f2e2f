"""Time values of the config: IANA zones, durations (``N`` + ``s|m|h|d``) and cron
expressions, validated here at the config layer (``dbcrate.schedule`` computes slots
from them). Pure; raises ``ScheduleProblem`` (the callers add file and key)."""

from __future__ import annotations

import re
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


def cron_expr(expr: str) -> str:
    """The 5- or 6-field expression cronsim reads for ``expr`` (an alias expanded).
    Raises ``ScheduleProblem`` for an unknown alias or an invalid expression."""
    text = expr.strip()
    if text.startswith("@"):
        if text.lower() not in ALIASES:
            raise ScheduleProblem(f"unknown schedule alias {expr!r} (known: "
                                  f"{', '.join(ALIASES)})")
        return ALIASES[text.lower()]
    fields = text.split()
    if len(fields) not in (5, 6):
        raise ScheduleProblem(f"invalid cron expression {expr!r}: expected 5 fields "
                              f"(or 6 with leading seconds), got {len(fields)}")
    cron = " ".join(fields)
    try:
        CronSim(cron, datetime(2000, 1, 1, tzinfo=UTC))
    except CronSimError as exc:
        raise ScheduleProblem(f"invalid cron expression {expr!r}: "
                              f"{str(exc).lower()}") from None
    return cron
