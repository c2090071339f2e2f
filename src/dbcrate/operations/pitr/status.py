"""The ``wal`` object of ``dbcrate status --json`` for a physical job: the newest archived
segment, when it arrived, how far the server is ahead of it, the RPO that means, and gaps
(docs/pitr.md). Reads the first readable target and, if reachable, the server."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from dbcrate.catalog import wal
from dbcrate.config import Config, JobConfig
from dbcrate.config.pitr import is_physical, parse_pitr
from dbcrate.errors import DbcrateError
from dbcrate.operations.listing import manifests
from dbcrate.operations.pitr import continuity
from dbcrate.operations.pitr.archive import objects, read_archive_info
from dbcrate.storage import open_target


def _server_lsn(job: JobConfig) -> int | None:
    from dbcrate.engines.postgres.physical.settings import current_lsn

    return current_lsn(job.url, job.password)


def wal_status(config: Config, job: JobConfig, now: datetime) -> dict[str, Any] | None:
    """The job's ``wal`` status (None for a logical job). Never raises: what cannot be
    read is ``null`` and named in ``error``."""
    if not is_physical(job):
        return None
    settings = parse_pitr(job.options, where=f"jobs.{job.name}", source=job.source)
    doc: dict[str, Any] = {"mode": settings.archive, "last_segment": None,
                           "last_archived_at": None, "lag_bytes": None, "rpo_seconds": None,
                           "gaps": None, "max_rpo_seconds": int(settings.max_rpo.total_seconds())
                           if settings.max_rpo else None, "max_rpo_exceeded": False,
                           "error": None}
    try:
        storage = open_target(config.target(job.targets[0]))
        info = read_archive_info(storage, job.name)
        segments = [o for o in objects(storage, job.name) if o.is_segment]
        bases = [m for m in manifests(storage, job.name) if m.kind == "base"]
    except DbcrateError as exc:
        doc["error"] = exc.message
        return doc
    seg_size = info.segment_size if info else 16 << 20
    if segments:
        newest = max(segments, key=lambda o: (wal.parse_segment(o.name, seg_size)[1],
                                              o.timeline))
        doc["last_segment"] = newest.name
        if newest.modified is not None:
            doc["last_archived_at"] = newest.modified.isoformat().replace("+00:00", "Z")
        end = (wal.parse_segment(newest.name, seg_size)[1] + 1) * seg_size
        lsn = _server_lsn(job)
        if lsn is not None:
            doc["lag_bytes"] = max(0, lsn - end)
        if doc["lag_bytes"] == 0:
            doc["rpo_seconds"] = 0
        elif newest.modified is not None:
            doc["rpo_seconds"] = int((now - newest.modified).total_seconds())
    if bases:
        first = min(wal.segment_no(wal.parse_lsn(m.extra["start_lsn"]), seg_size)
                    for m in bases)
        segs = continuity.available(segments, seg_size, 1)
        sp = continuity.span(segs, first, max([first, *segs]))
        doc["gaps"] = [wal.segment_name(1, s, seg_size) for s in sp.missing]
    if settings.max_rpo and doc["rpo_seconds"] is not None:
        doc["max_rpo_exceeded"] = doc["rpo_seconds"] > settings.max_rpo.total_seconds()
    return doc
