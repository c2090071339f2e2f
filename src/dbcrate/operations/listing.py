"""Read the catalog from storage: the manifests a target holds, and which are trusted."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

from dbcrate import catalog
from dbcrate.config import Config
from dbcrate.errors import DbcrateError, ManifestError, WrongKey
from dbcrate.model import Manifest, ObjectInfo
from dbcrate.operations import leftovers
from dbcrate.operations.authn import Policy, authenticate, policy_for
from dbcrate.storage import Storage, open_target

log = logging.getLogger("dbcrate.list")

#: a manifest is a few KiB; a larger object at a manifest key is not read at all
MAX_MANIFEST_SIZE = 1 << 20
#: (manifest key, why it was skipped)
Skipped = list[tuple[str, str]]


@dataclass(frozen=True)
class Listed:
    """One backup as found on its targets: ``targets`` in job (or config) order and
    ``target`` the first of them; ``authenticated`` says how the first copy's manifest
    was verified (``signed by NAME``, ``hmac``, or empty)."""

    target: str
    manifest: Manifest
    authenticated: str = ""
    targets: tuple[str, ...] = ()


def read(storage: Storage, job: str | None = None,
         skipped: Skipped | None = None) -> Iterator[tuple[str, bytes, Manifest]]:
    """``(key, raw bytes, manifest)`` of every readable manifest on ``storage`` (of
    ``job`` if given). A damaged manifest is logged (naming its key), recorded in
    ``skipped`` and skipped, so other backups stay listable. Raises ``StorageError`` if
    the target cannot be listed.
    """
    for obj in _catalog_objects(storage, job):
        if not catalog.is_manifest(obj.key):
            continue
        got = _read_one(storage, obj, skipped)
        if got is not None and (job is None or got[1].job == job):
            yield obj.key, got[0], got[1]


def _read_one(storage: Storage, obj: ObjectInfo,
              skipped: Skipped | None) -> tuple[bytes, Manifest] | None:
    """The raw bytes and manifest at ``obj``; None (logged, recorded in ``skipped``) when
    it is not a readable manifest. Raises ``StorageError``."""
    try:
        if obj.size > MAX_MANIFEST_SIZE:
            raise ManifestError(f"manifest {obj.key} is {obj.size} bytes, not a manifest")
        body = b"".join(storage.get(obj.key))
        return body, catalog.decode(body, where=obj.key)
    except ManifestError as exc:
        log.warning("skipping %s: %s", obj.key, exc)
        if skipped is not None:
            skipped.append((obj.key, exc.message))
        return None


def candidates(storage: Storage, job: str, *, at: datetime | None = None,
               backup_id: str | None = None) -> list[Manifest]:
    """The manifests of ``job`` on ``storage`` among which ``catalog.select`` picks the
    same backup as among all of them (``--latest``; ``at``; ``backup_id``), read newest
    key first so that a restore does not read a long catalog whole: a key names its
    backup's start second and id (``catalog.data_key``), so keys of a later second than
    ``at``, of another id than ``backup_id``, or of an earlier second than the best
    match read so far cannot hold the answer and are not read. A key of another form
    is always read. Not authenticated (see ``trusted``). Raises ``StorageError``."""
    objs = sorted((o for o in _catalog_objects(storage, job) if catalog.is_manifest(o.key)),
                  key=lambda o: o.key, reverse=True)
    found: list[Manifest] = []
    best: datetime | None = None  # the start second of the best match read so far
    for obj in objs:
        named = catalog.key_name(obj.key)
        if named is not None:
            second, bid = named
            if (backup_id is not None and not bid.startswith(backup_id)) or \
                    (at is not None and second > at) or (best is not None and second < best):
                continue
        got = _read_one(storage, obj, None)
        if got is None or got[1].job != job:
            continue
        m = got[1]
        found.append(m)
        if backup_id is None and m.status == "complete" and (at is None or m.started_at <= at):
            second = m.started_at.astimezone(UTC).replace(microsecond=0)
            best = second if best is None else max(best, second)
    return found


def _catalog_objects(storage: Storage, job: str | None) -> Iterator[ObjectInfo]:
    """The objects that may be manifests: of a job, those under ``{job}/{digit}`` (its
    dated keys), so a physical job's ``{job}/wal/`` is never paged through."""
    if not job:
        yield from storage.list("")
        return
    for digit in "0123456789":
        yield from storage.list(f"{job}/{digit}")


def manifests(storage: Storage, job: str | None = None) -> Iterator[Manifest]:
    """Every readable manifest on ``storage`` (of ``job`` if given), not yet
    authenticated (see ``trusted``). Raises ``StorageError`` as ``read``."""
    for _, _, m in read(storage, job):
        yield m


def trusted(storage: Storage, job: str | None, policies: Callable[[str], Policy],
            skipped: Skipped | None = None) -> Iterator[tuple[Manifest, str]]:
    """``(manifest, how authenticated)`` of the manifests ``read`` yields that pass their
    job's policy; the others are logged as ignored (naming the key and why) and recorded
    in ``skipped``. Raises ``StorageError`` as ``read``."""
    for key, body, m in read(storage, job, skipped):
        try:
            how = authenticate(storage, key, body, m, policies(m.job))
        except (ManifestError, WrongKey) as exc:
            log.warning("ignoring %s: %s", key, exc.message)
            if skipped is not None:
                skipped.append((key, exc.message))
            continue
        yield m, how


def list_backups(
    config: Config, job: str | None = None, target: str | None = None
) -> tuple[list[Listed], dict[str, DbcrateError]]:
    """Trusted backups on ``target`` (or every configured target), oldest first, one
    entry per backup (its copies' targets in ``targets``), and the targets that could
    not be read with their errors. Times shown come from the (verified) manifests,
    never from object keys or modification times."""
    names = [target] if target else list(_targets_of(config, job))
    found: list[Listed] = []
    errors: dict[str, DbcrateError] = {}
    policies: dict[str, Policy] = {}

    def pol(name: str) -> Policy:
        if name not in policies:
            policies[name] = policy_for(config, name)
        return policies[name]

    for name in names:
        try:
            storage = open_target(config.target(name))
            found.extend(Listed(name, m, how) for m, how in trusted(storage, job, pol))
        except DbcrateError as exc:
            if target:
                raise
            errors[name] = exc
    return group(found, names), errors


def group(found: list[Listed], order: list[str]) -> list[Listed]:
    """One ``Listed`` per backup id, oldest first; its ``targets`` in ``order``."""
    rank = {n: i for i, n in enumerate(order)}
    found = sorted(found, key=lambda x: (x.manifest.started_at, x.manifest.id,
                                         rank.get(x.target, len(rank)), x.target))
    out: dict[str, Listed] = {}
    copies: dict[str, list[str]] = {}
    for x in found:
        out.setdefault(x.manifest.id, x)
        copies.setdefault(x.manifest.id, []).append(x.target)
    return [replace(x, targets=tuple(copies[i])) for i, x in out.items()]


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
