"""WAL continuity (pure): which segments a restore needs and which of them are missing.

A base needs every segment from the one holding its start LSN to the one holding the
target; a segment may come from the base's timeline or a later one (a history file says
where it forked; replay follows it).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from dbcrate.catalog import wal
from dbcrate.errors import DbcrateError


class WalGap(DbcrateError):
    """A segment between a base and the target is not in the archive (exit 13)."""

    exit_code = 13


@dataclass(frozen=True)
class Span:
    """Segments ``first``..``last`` (numbers) of a restore, and the missing ones."""

    first: int
    last: int
    missing: tuple[int, ...]


def available(objects: Iterable[wal.WalObject], seg_size: int,
              min_timeline: int) -> dict[int, list[wal.WalObject]]:
    """segno -> the stored segments with that number on timelines >= ``min_timeline``."""
    out: dict[int, list[wal.WalObject]] = {}
    for obj in objects:
        if obj.is_segment and obj.timeline >= min_timeline:
            _, segno = wal.parse_segment(obj.name, seg_size)
            out.setdefault(segno, []).append(obj)
    return out


def end_for_time(segs: dict[int, list[wal.WalObject]], first: int, when: datetime) -> int:
    """The last segment a restore to ``when`` can need: the first one (from ``first`` on)
    stored at or after ``when`` (a segment is archived after what it holds), else the
    newest stored."""
    for segno in sorted(s for s in segs if s >= first):
        if any(o.modified is not None and o.modified >= when for o in segs[segno]):
            return segno
    return max(segs, default=first)


def span(segs: dict[int, list[wal.WalObject]], first: int, last: int) -> Span:
    """The ``Span`` from ``first`` to ``last`` with what is missing."""
    return Span(first, last, tuple(s for s in range(first, last + 1) if s not in segs))


def gap_error(sp: Span, timeline: int, seg_size: int, job: str, what: str) -> WalGap:
    names = [wal.segment_name(timeline, s, seg_size) for s in sp.missing[:5]]
    more = f" and {len(sp.missing) - 5} more" if len(sp.missing) > 5 else ""
    return WalGap(f"the WAL archive of job {job} has a gap: {', '.join(names)}{more} "
                  f"missing, needed for {what}",
                  hint="restore to a point before the gap, or from a newer base (`dbcrate "
                  "wal verify JOB` shows each base's restorable window)")
