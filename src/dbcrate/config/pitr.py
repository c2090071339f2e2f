"""A PostgreSQL job's physical-mode keys (``mode``, ``archive``, ``partial_interval``,
``max_rpo``; docs/pitr.md), read from ``JobConfig.options``. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from dbcrate.config.timing import ScheduleProblem, parse_duration
from dbcrate.errors import ConfigError

if TYPE_CHECKING:
    from dbcrate.config.model import JobConfig

MODES = ("logical", "physical")
ARCHIVES = ("command", "stream")


@dataclass(frozen=True)
class PitrSettings:
    """How a job backs up: ``logical`` (pg_dump) or ``physical`` (base backups + WAL)."""

    mode: str = "logical"
    archive: str = "command"
    partial_interval: timedelta = timedelta(seconds=10)
    max_rpo: timedelta | None = None

    @property
    def physical(self) -> bool:
        return self.mode == "physical"


def is_physical(job: JobConfig) -> bool:
    """Whether ``job`` takes base backups (``mode = "physical"``)."""
    return job.engine == "postgres" and job.options.get("mode") == "physical"


def _choice(options: Mapping[str, Any], key: str, allowed: tuple[str, ...], where: str,
            source: str) -> str:
    value = options.get(key, allowed[0])
    if value not in allowed:
        raise ConfigError(f"{key} = {value!r} is not one of {', '.join(allowed)}",
                          hint=f"set {key} to one of: {', '.join(allowed)}", file=source,
                          key=f"{where}.{key}")
    return str(value)


def _duration(options: Mapping[str, Any], key: str, where: str,
              source: str) -> timedelta | None:
    value = options.get(key)
    if value is None:
        return None
    try:
        d = parse_duration(value)
    except ScheduleProblem as exc:
        raise ConfigError(str(exc), hint="e.g. 10s, 5m", file=source,
                          key=f"{where}.{key}") from None
    if d.total_seconds() <= 0:
        raise ConfigError(f"{key} must be longer than 0s", file=source, key=f"{where}.{key}")
    return d


def parse_pitr(options: Mapping[str, Any], *, where: str = "job",
               source: str = "<memory>") -> PitrSettings:
    """The job's physical-mode settings. Raises ``ConfigError`` naming the key for an
    unknown mode or archive, a malformed duration, or stream/physical keys on a logical
    job."""
    mode = _choice(options, "mode", MODES, where, source)
    archive = _choice(options, "archive", ARCHIVES, where, source)
    partial = _duration(options, "partial_interval", where, source)
    rpo = _duration(options, "max_rpo", where, source)
    if mode != "physical":
        for key in ("archive", "partial_interval", "max_rpo"):
            if key in options:
                raise ConfigError(f"{key} applies to mode = \"physical\" jobs only",
                                  hint='set mode = "physical" (docs/pitr.md) or remove it',
                                  file=source, key=f"{where}.{key}")
    return PitrSettings(mode=mode, archive=archive,
                        partial_interval=partial or timedelta(seconds=10), max_rpo=rpo)
