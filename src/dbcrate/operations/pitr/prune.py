"""Retention of the WAL archive: WAL ending before the oldest kept base's start LSN goes,
nothing newer (history files always stay: they are tiny and replay needs them)."""

from __future__ import annotations

from collections.abc import Iterable

from dbcrate.catalog import wal
from dbcrate.model import Manifest
from dbcrate.operations.pitr.archive import objects
from dbcrate.storage import Storage


def prunable(stored: Iterable[wal.WalObject],
             kept_bases: Iterable[Manifest]) -> list[wal.WalObject]:
    """The WAL objects that end before the oldest kept base's start (pure). None when no
    base is kept: with no base, WAL restores nothing, but deleting it is not ours to
    decide."""
    bases = [m for m in kept_bases if m.kind == "base"]
    if not bases:
        return []
    oldest = min(bases, key=lambda m: wal.parse_lsn(m.extra["start_lsn"]))
    seg_size = int(oldest.extra["segment_size"])
    first = wal.segment_no(wal.parse_lsn(oldest.extra["start_lsn"]), seg_size)
    out = []
    for obj in stored:
        if wal.HISTORY.fullmatch(obj.name):
            continue
        _, segno = wal.parse_segment(obj.name[:24], seg_size)
        if segno < first:
            out.append(obj)
    return out


def prune_wal(storage: Storage, job: str, kept_bases: Iterable[Manifest], *,
              dry_run: bool) -> list[str]:
    """Delete (unless ``dry_run``) what ``prunable`` names on ``storage``; the WAL file
    names. Raises ``StorageError``."""
    doomed = prunable(objects(storage, job), kept_bases)
    if not dry_run:
        for obj in doomed:
            storage.delete(obj.key)
    return [o.name for o in doomed]
