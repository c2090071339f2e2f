"""The verdict of a verified restore, from its checks (pure: no I/O, no imports of
other layers). docs/verify.md: a failed check (pg_restore errors included) -> ``fail``;
else any alarm -> ``alarm``; else ``pass``. Exit codes 0 / 20 / 21."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

PASS, FAIL, ALARM, SKIP = "pass", "fail", "alarm", "skip"
EXIT_CODES = {PASS: 0, FAIL: 20, ALARM: 21}
#: kind -> the stage a failure of it is reported at (``failed_at``)
_STAGE = {"integrity": "integrity", "pg_restore": "restore", "mysql_restore": "restore"}


@dataclass(frozen=True)
class Check:
    """One check's outcome. ``name`` only for user checks; ``numbers`` are counts only
    (what a verification record may hold)."""

    kind: str
    status: str
    detail: str = ""
    name: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name or self.kind, "kind": self.kind, "status": self.status,
                "detail": self.detail}


@dataclass(frozen=True)
class Verdict:
    result: str
    reason: str | None
    failed_at: str | None

    @property
    def exit_code(self) -> int:
        return EXIT_CODES[self.result]


def decide(checks: Sequence[Check]) -> Verdict:
    """``fail`` if any check failed (``failed_at`` from the first failed one), else
    ``alarm`` if any alarmed, else ``pass``; ``reason`` is the first such check's detail."""
    for status in (FAIL, ALARM):
        hit = [c for c in checks if c.status == status]
        if hit:
            first = hit[0]
            label = first.name or first.kind
            at = _STAGE.get(first.kind, "checks") if status == FAIL else None
            return Verdict(status, f"{label}: {first.detail}" if first.detail else label, at)
    return Verdict(PASS, None, None)


def user_check(kind: str, expected: Sequence[Any], rows: Sequence[Sequence[Any]]) -> str | None:
    """Why the rows of a user check miss its expectation (None if they meet it).
    ``min_rows``: at least N rows; ``between``/``equals``: exactly one row of one value."""
    if kind == "min_rows":
        return None if len(rows) >= expected[0] else \
            f"expected at least {expected[0]} rows, got {len(rows)}"
    if len(rows) != 1 or len(rows[0]) != 1:
        shape = f"{len(rows)} rows" + (f" of {len(rows[0])} columns" if rows else "")
        return f"expected one row of one value, got {shape}"
    value = rows[0][0]
    if kind == "equals":
        same = value == expected[0] or str(value) == str(expected[0])
        return None if same else f"expected {expected[0]!r}, got {value!r}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"expected a number between {expected[0]} and {expected[1]}, got {value!r}"
    if expected[0] <= number <= expected[1]:
        return None
    return f"expected between {expected[0]} and {expected[1]}, got {value!r}"


def row_drops(current: Mapping[str, int], previous: Mapping[str, int],
              percent: float) -> list[str]:
    """The tables (keys) whose rows fell by more than ``percent`` % versus ``previous``
    (``percent`` 0 = off), each as ``"KEY: A -> B (-P%)"``."""
    if percent <= 0:
        return []
    out = []
    for key, before in previous.items():
        now = current.get(key)
        if now is None or before <= 0:
            continue
        drop = 100.0 * (before - now) / before
        if drop > percent:
            out.append(f"{key}: {before} -> {now} (-{drop:.0f}%)")
    return out


def worst(results: Iterable[str]) -> str:
    """The day's result: fail > alarm > pass; ``none`` for no results."""
    seen = set(results)
    for r in (FAIL, ALARM, PASS):
        if r in seen:
            return r
    return "none"
