"""Which backup a selector (``--latest``, ``--at``, ``--id``) names. Pure functions."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from dbcrate.catalog.manifest import encode_time
from dbcrate.errors import BackupNotFound, UsageError
from dbcrate.model import Manifest


def ordered(manifests: Iterable[Manifest]) -> list[Manifest]:
    """Oldest first, ties broken by id (UUIDv7 sorts by time)."""
    return sorted(manifests, key=lambda m: (m.started_at, m.id))


def select(
    manifests: Iterable[Manifest],
    job: str,
    *,
    latest: bool = False,
    at: datetime | None = None,
    backup_id: str | None = None,
) -> Manifest:
    """Pick one complete backup of ``job``: the newest, the newest started at or before
    ``at``, or the one whose id is (or uniquely starts with) ``backup_id``.

    Raises ``UsageError`` unless exactly one selector is given; ``BackupNotFound``.
    """
    if sum((latest, at is not None, backup_id is not None)) != 1:
        raise UsageError("choose exactly one of --latest, --at TIME or --id ID")
    unique: dict[str, Manifest] = {}  # a backup on several targets counts once
    for m in manifests:
        if m.job == job and m.status == "complete":
            unique.setdefault(m.id, m)
    candidates = ordered(unique.values())
    if not candidates:
        raise BackupNotFound(f"no backups of job {job!r} found")
    if latest:
        return candidates[-1]
    if at is not None:
        before = [m for m in candidates if m.started_at <= at]
        if not before:
            raise BackupNotFound(
                f"no backup of job {job!r} started at or before {encode_time(at)}; "
                f"the oldest started at {encode_time(candidates[0].started_at)}"
            )
        return before[-1]
    assert backup_id is not None
    matches = [m for m in candidates if m.id == backup_id or m.id.startswith(backup_id)]
    if len(matches) == 1 and (matches[0].id == backup_id or len(backup_id) >= 8):
        return matches[0]
    if len(matches) > 1:
        raise UsageError(f"id {backup_id!r} matches {len(matches)} backups; give more of it")
    raise BackupNotFound(f"no backup of job {job!r} has id {backup_id!r}")
