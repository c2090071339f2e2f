"""Leftovers of killed runs: the temp objects of our own naming a SIGKILL or a power cut
leaves behind (local ``.dbcrate-tmp-*`` files, open S3 multipart uploads). ``backup`` and
``prune`` remove those older than the safe age under the job's prefix; ``list`` counts
what it sees. A storage without temp objects has no ``leftovers`` method."""

from __future__ import annotations

import logging
import os
from datetime import timedelta

from dbcrate.errors import ConfigError, DbcrateError
from dbcrate.storage import AbortsIncomplete, Storage

log = logging.getLogger("dbcrate.leftovers")

#: environment variable: the safe age in seconds (docs/config.md)
AGE_ENV = "DBCRATE_LEFTOVER_AGE"
#: temp objects untouched this long belong to no running process
DEFAULT_AGE = timedelta(hours=1)


def safe_age() -> timedelta:
    """``$DBCRATE_LEFTOVER_AGE`` seconds, else one hour. Raises ``ConfigError`` if the
    variable is not a non-negative number."""
    raw = os.environ.get(AGE_ENV)
    if raw is None or not raw.strip():
        return DEFAULT_AGE
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ConfigError(f"${AGE_ENV} must be a number of seconds, not {raw!r}",
                          hint=f"unset it for the default ({int(DEFAULT_AGE.total_seconds())})")
    return timedelta(seconds=seconds)


def _prefix(job: str | None) -> str:
    return f"{job}/" if job else ""


def sweep(storage: Storage, job: str) -> int:
    """Remove the leftovers under ``job``'s prefix older than ``safe_age()``; how many.
    Raises ``StorageError``, ``ConfigError``."""
    if not isinstance(storage, AbortsIncomplete):
        return 0
    removed = storage.leftovers(_prefix(job), safe_age(), remove=True)
    if removed:
        log.info("%s: removed %d leftover temp object(s) of interrupted runs of %s",
                 storage.name, removed, job)
    return removed


def sweep_quietly(storage: Storage, job: str) -> int:
    """``sweep``, logging (not raising) a failure: a backup must not fail over it."""
    try:
        return sweep(storage, job)
    except DbcrateError as exc:
        log.warning("%s: could not remove leftovers of interrupted runs: %s",
                    storage.name, exc.message)
        return 0


def count(storage: Storage, job: str | None = None) -> int:
    """How many temp objects (of any age, not of a live local process) there are under
    ``job``'s prefix (the whole target without one). Raises ``StorageError``."""
    if not isinstance(storage, AbortsIncomplete):
        return 0
    return storage.leftovers(_prefix(job), timedelta(0), remove=False)
