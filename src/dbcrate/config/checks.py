"""Verification settings of a job (``verify_*`` keys, ``[[backup.jobs.checks]]``): the
frozen values and their parsing. Every error is a ``ConfigError`` naming file and key.
See docs/config.md ("Verified restores") and docs/verify.md."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dbcrate.config.timing import ScheduleProblem, cron_expr
from dbcrate.errors import ConfigError

#: keys a [backup] table and a job may both set
VERIFY_KEYS = frozenset({
    "verify_dir", "verify_row_drop_alarm", "verify_rto_alarm", "verify_schedule",
    "verify_check_timeout", "count_rows",
})
#: ``count_rows``: how backup-time row counts are taken (docs/verify.md)
COUNT_METHODS = ("stream", "snapshot")
#: keys of one ``[[backup.jobs.checks]]`` table
CHECK_KEYS = frozenset({"name", "sql", "min_rows", "between", "equals", "severity"})
_EXPECTATIONS = ("min_rows", "between", "equals")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
DEFAULT_ROW_DROP_ALARM = 20.0
DEFAULT_CHECK_TIMEOUT = 60.0


@dataclass(frozen=True)
class UserCheck:
    """One user SQL check: exactly one expectation (``kind`` names it)."""

    name: str
    sql: str
    kind: str  # min_rows | between | equals
    expected: tuple[Any, ...]
    severity: str = "fail"


@dataclass(frozen=True)
class VerifySettings:
    """A job's verification settings (all optional)."""

    dir: str | None = None
    #: percent per table; 0 = off
    row_drop_alarm: float = DEFAULT_ROW_DROP_ALARM
    #: seconds; None = off
    rto_alarm: float | None = None
    schedule: str | None = None
    checks: tuple[UserCheck, ...] = ()
    #: seconds a user check may run (``verify_check_timeout``)
    check_timeout: float = DEFAULT_CHECK_TIMEOUT
    #: ``stream`` (count COPY rows as the dump streams) or ``snapshot`` (``count(*)`` per
    #: table in the dump's exported snapshot: reads every table a second time)
    count_rows: str = "stream"


def parse_duration(value: Any) -> float | None:
    """Seconds for ``90``, ``"90s"``, ``"15m"``, ``"1h"``, ``"1d"``; None if not one."""
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
        return float(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd]?)\s*", value)
        if m and float(m.group(1)) > 0:
            return float(m.group(1)) * _UNITS[m.group(2) or "s"]
    return None


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def parse_verify(merged: Mapping[str, Any], engine: str, source: str,
                 where: str) -> VerifySettings:
    """The verification settings of a job from its keys merged over ``[backup]``.

    Raises ``ConfigError`` naming the file and key: a bad ``verify_*`` value, a check
    without or with two expectations, ``between`` not two ascending numbers, a missing or
    duplicate name, a bad severity, or checks on a redis job."""

    def err(key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, hint, file=source, key=f"{where}.{key}")

    vdir = merged.get("verify_dir")
    if vdir is not None and (not isinstance(vdir, str) or not vdir):
        raise err("verify_dir", "expected a directory path (a non-empty string)")
    drop = merged.get("verify_row_drop_alarm", DEFAULT_ROW_DROP_ALARM)
    if not _number(drop) or not 0 <= drop <= 100:
        raise err("verify_row_drop_alarm", f"expected a percentage 0..100, got {drop!r}",
                  hint="e.g. verify_row_drop_alarm = 20 (0 turns the alarm off)")
    rto = merged.get("verify_rto_alarm")
    rto_s = None
    if rto is not None:
        rto_s = parse_duration(rto)
        if rto_s is None:
            raise err("verify_rto_alarm", f"expected a duration, got {rto!r}",
                      hint='e.g. "90s", "15m", "1h" (leave it unset to turn the alarm off)')
    timeout = merged.get("verify_check_timeout", "60s")
    timeout_s = parse_duration(timeout)
    if timeout_s is None:
        raise err("verify_check_timeout", f"expected a duration, got {timeout!r}",
                  hint='e.g. "60s" or "5m": how long one user check may run')
    method = merged.get("count_rows", "stream")
    if method not in COUNT_METHODS:
        raise err("count_rows", f"expected \"stream\" or \"snapshot\", got {method!r}",
                  hint='"snapshot" runs count(*) per table in the dump\'s snapshot '
                  "(reads every table twice)")
    if method == "snapshot" and engine != "postgres":
        raise err("count_rows", f"count_rows = \"snapshot\" is for postgres jobs, not {engine}")
    schedule = merged.get("verify_schedule")
    if schedule is not None and not isinstance(schedule, str):
        raise err("verify_schedule", "expected a cron expression string")
    if schedule is not None:
        try:
            cron_expr(schedule)
        except ScheduleProblem as exc:
            raise err("verify_schedule", str(exc), hint="as `schedule`: five fields (e.g. "
                      "\"30 4 * * *\"), six with leading seconds, or @daily ...") from None
    raw = merged.get("checks", [])
    if not isinstance(raw, list):
        raise err("checks", "expected an array of tables ([[backup.jobs.checks]])")
    if raw and engine == "redis":
        raise err("checks", "a redis job cannot have SQL checks",
                  hint="remove the [[backup.jobs.checks]] tables of this job")
    checks: list[UserCheck] = []
    for i, table in enumerate(raw):
        checks.append(_check(table, f"checks[{i}]", err))
        if checks[-1].name in {c.name for c in checks[:-1]}:
            raise err(f"checks[{i}].name", f"duplicate check name {checks[-1].name!r}",
                      hint="check names are unique in a job")
    return VerifySettings(dir=vdir, row_drop_alarm=float(drop), rto_alarm=rto_s,
                          schedule=schedule, checks=tuple(checks), check_timeout=timeout_s,
                          count_rows=method)


def _check(table: Any, at: str, err: Any) -> UserCheck:
    if not isinstance(table, Mapping):
        raise err(at, "expected a table ([[backup.jobs.checks]])")
    unknown = sorted(set(table) - CHECK_KEYS)
    if unknown:
        raise err(f"{at}.{unknown[0]}", f"unknown key {unknown[0]!r}",
                  hint=f"a check has: {', '.join(sorted(CHECK_KEYS))}")
    name = table.get("name")
    if not isinstance(name, str) or not name.strip():
        raise err(f"{at}.name", "is required (a non-empty string)")
    query = table.get("sql")
    if not isinstance(query, str) or not query.strip():
        raise err(f"{at}.sql", "is required (a non-empty string)")
    given = [k for k in _EXPECTATIONS if k in table]
    if len(given) != 1:
        raise err(at, f"check {name!r} needs exactly one of min_rows, between, equals "
                  f"(got {', '.join(given) or 'none'})")
    kind = given[0]
    value = table[kind]
    if kind == "min_rows" and (not isinstance(value, int) or isinstance(value, bool)
                               or value < 0):
        raise err(f"{at}.min_rows", f"expected a non-negative integer, got {value!r}")
    if kind == "between" and not (isinstance(value, list) and len(value) == 2
                                  and all(_number(v) for v in value) and value[0] <= value[1]):
        raise err(f"{at}.between", f"expected two ascending numbers [A, B], got {value!r}")
    severity = table.get("severity", "fail")
    if severity not in ("fail", "alarm"):
        raise err(f"{at}.severity", f"expected \"fail\" or \"alarm\", got {severity!r}")
    expected = tuple(value) if kind == "between" else (value,)
    return UserCheck(name=name, sql=query, kind=kind, expected=expected, severity=severity)
