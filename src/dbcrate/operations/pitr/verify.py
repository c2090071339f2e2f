"""``dbcrate wal verify JOB``: the archive from the oldest base's start segment to the
newest segment (and the server's current one when it can be asked): gaps, missing
history files, conflicting copies, each base's restorable window; with ``read`` every
object is decrypted and checked (digest, page header)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from dbcrate import catalog
from dbcrate.catalog import wal
from dbcrate.config import Config, JobConfig
from dbcrate.errors import DbcrateError
from dbcrate.model import Manifest
from dbcrate.operations.listing import manifests
from dbcrate.operations.pipeline import KeyMaterial
from dbcrate.operations.pitr import continuity
from dbcrate.operations.pitr.archive import objects, read_archive_info
from dbcrate.operations.pitr.fetch import read_wal
from dbcrate.storage import open_target

log = logging.getLogger("dbcrate.wal")


@dataclass
class WalReport:
    """One target's archive."""

    job: str
    target: str
    segment_size: int = 0
    first: str | None = None
    last: str | None = None
    gaps: list[str] = field(default_factory=list)
    missing_history: list[str] = field(default_factory=list)
    conflicts: list[str] = field(default_factory=list)
    damaged: list[dict[str, str]] = field(default_factory=list)
    bases: list[dict[str, Any]] = field(default_factory=list)
    segments: int = 0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return not (self.gaps or self.missing_history or self.conflicts or self.damaged
                    or self.error)

    def json(self) -> dict[str, Any]:
        return {"job": self.job, "target": self.target, "ok": self.ok,
                "segment_size": self.segment_size, "first": self.first, "last": self.last,
                "segments": self.segments, "gaps": self.gaps,
                "missing_history": self.missing_history, "conflicts": self.conflicts,
                "damaged": self.damaged, "bases": self.bases, "error": self.error}


def verify_wal(config: Config, job: JobConfig, *, target: str | None = None,
               read: bool = False, keys: KeyMaterial | None = None,
               current: str | None = None) -> list[WalReport]:
    """A report per target. ``current``: the server's current segment name, if known
    (WAL up to the one before it must be archived). Never raises for what it finds;
    a target that cannot be read has ``error`` set."""
    out = []
    for name in [target] if target else list(job.targets):
        report = WalReport(job.name, name)
        out.append(report)
        try:
            _verify_one(config, job, report, read, keys or KeyMaterial(), current)
        except DbcrateError as exc:
            report.error = exc.message
    return out


def _verify_one(config: Config, job: JobConfig, report: WalReport, read: bool,
                keys: KeyMaterial, current: str | None) -> None:
    storage = open_target(config.target(report.target))
    bases = sorted((m for m in manifests(storage, job.name) if m.kind == "base"),
                   key=lambda m: wal.parse_lsn(m.extra["start_lsn"]))
    info = read_archive_info(storage, job.name)
    stored = objects(storage, job.name)
    seg_size = info.segment_size if info else int(bases[0].extra["segment_size"]) \
        if bases else 16 << 20
    report.segment_size = seg_size
    by_name: dict[str, list[wal.WalObject]] = {}
    for o in stored:
        by_name.setdefault(o.name, []).append(o)
    report.conflicts = sorted(n for n, cs in by_name.items()
                              if len({c.sha256 for c in cs}) > 1)
    tlis = {o.timeline for o in stored if o.is_segment}
    report.missing_history = [wal.history_name(t) for t in sorted(tlis) if t > 1
                              and wal.history_name(t) not in by_name]
    if not bases:
        return
    min_tli = int(bases[0].extra["timeline"])
    segs = continuity.available(stored, seg_size, min_tli)
    first = wal.segment_no(wal.parse_lsn(bases[0].extra["start_lsn"]), seg_size)
    last = max([first, *segs])
    if current is not None:
        last = max(last, wal.parse_segment(current, seg_size)[1] - 1)
    sp = continuity.span(segs, first, last)
    report.segments = sum(1 for s in segs if s >= first)
    report.first = wal.segment_name(min_tli, first, seg_size)
    report.last = wal.segment_name(max(tlis or {min_tli}), last, seg_size)
    report.gaps = [wal.segment_name(min_tli, s, seg_size) for s in sp.missing]
    for m in bases:
        report.bases.append(_window(m, segs, seg_size, sp.missing))
    if read:
        for o in stored:
            try:
                read_wal(storage, job, o, keys, info)
            except DbcrateError as exc:
                report.damaged.append({"name": o.name, "key": o.key, "error": exc.message})


def _window(m: Manifest, segs: dict[int, list[wal.WalObject]], seg_size: int,
            missing: tuple[int, ...]) -> dict[str, Any]:
    """Where base ``m`` can be restored to: from its stop to the last segment before the
    first gap after its start."""
    start = wal.segment_no(wal.parse_lsn(m.extra["start_lsn"]), seg_size)
    stop = wal.segment_no(wal.parse_lsn(m.extra["stop_lsn"]), seg_size)
    gaps = [g for g in missing if g >= start]
    end = (gaps[0] - 1) if gaps else max([stop, *segs])
    newest = [o.modified for o in segs.get(end, []) if o.modified is not None]
    return {"id": m.id, "timeline": int(m.extra["timeline"]),
            "start_lsn": m.extra["start_lsn"], "stop_lsn": m.extra["stop_lsn"],
            "restorable": end >= stop,
            "from_time": catalog.encode_time(m.finished_at),
            "to_segment": wal.segment_name(int(m.extra["timeline"]), end, seg_size)
            if end >= stop else None,
            "to_time": catalog.encode_time(max(newest)) if newest and end >= stop else None}
