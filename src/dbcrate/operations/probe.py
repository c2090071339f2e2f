"""Probes that change nothing lasting: ``target check`` (write/read/list/delete of a small
object) and the least-privilege grants a job needs (``dbcrate grants``)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from dbcrate.config import Config, JobConfig
from dbcrate.storage import open_target


@dataclass(frozen=True)
class ProbeResult:
    """What ``check_target`` found: where the target points and how long the probe took."""

    target: str
    where: str
    seconds: float


def check_target(config: Config, name: str) -> ProbeResult:
    """Probe target ``name`` end to end. Raises ``UsageError`` (unknown target),
    ``ConfigError`` or ``StorageError`` naming the step that failed. Leaves nothing behind
    (the probe object is deleted)."""
    storage = open_target(config.target(name))
    t0 = time.monotonic()
    storage.probe()
    return ProbeResult(name, storage.describe(), time.monotonic() - t0)


def job_grants(job: JobConfig) -> str:
    """The SQL/ACL script that creates the least-privilege role ``job``'s backups need
    (docs/engines/*.md, "Least privilege"). Connects to nothing; holds no secret.
    Raises ``ConfigError`` for a URL the engine cannot parse."""
    from dbcrate.engines.grants import grants

    return grants(job.engine, job.url, job.options)
