"""Read the catalog from storage: the manifests a target holds."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass

from dbcrate import catalog
from dbcrate.config import Config
from dbcrate.errors import DbcrateError, ManifestError
from dbcrate.model import Manifest
from dbcrate.operations import leftovers
from dbcrate.storage import Storage, open_target

log = logging.getLogger("dbcrate.list")


@dataclass(frozen=True)
class Listed:
    """One backup as found on one target."""

    target: str
    manifest: Manifest


def manifests(storage: Storage, job: str | None = None) -> Iterator[Manifest]:
    """Every readable manifest on ``storage`` (of ``job`` if given).

    A damaged manifest is logged and skipped (other backups stay listable). Raises
    ``StorageError`` if the target cannot be listed.
    """
    prefix = f"{job}/" if job else ""
    for obj in storage.list(prefix):
        if not catalog.is_manifest(obj.key):
            continue
        body = b"".join(storage.get(obj.key))
        try:
            m = catalog.decode(body, where=obj.key)
        except ManifestError as exc:
            log.warning("skipping %s: %s", obj.key, exc)
            continue
        if job is None or m.job == job:
            yield m


def list_backups(
    config: Config, job: str | None = None, target: str | None = None
) -> tuple[list[Listed], dict[str, DbcrateError]]:
    """Backups on ``target`` (or every configured target), oldest first, and the targets
    that could not be read with their errors."""
    names = [target] if target else list(_targets_of(config, job))
    found: list[Listed] = []
    errors: dict[str, DbcrateError] = {}
    for name in names:
        try:
            storage = open_target(config.target(name))
            found.extend(Listed(name, m) for m in manifests(storage, job))
        except DbcrateError as exc:
            if target:
                raise
            errors[name] = exc
    found.sort(key=lambda x: (x.manifest.started_at, x.manifest.id, x.target))
    return found, errors


def count_leftovers(
    config: Config, job: str | None = None, target: str | None = None
) -> dict[str, int]:
    """Per target (that has any), how many temp objects of interrupted or running writes
    it holds under ``job``'s prefix (``operations.leftovers.count``). A target that
    cannot be read is skipped (``list_backups`` reports it)."""
    counts: dict[str, int] = {}
    for name in [target] if target else list(_targets_of(config, job)):
        try:
            n = leftovers.count(open_target(config.target(name)), job)
        except DbcrateError:
            continue
        if n:
            counts[name] = n
    return counts


def _targets_of(config: Config, job: str | None) -> Iterator[str]:
    if job is None:
        yield from config.targets
        return
    yield from config.job(job).targets
