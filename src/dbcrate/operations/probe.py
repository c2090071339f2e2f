"""``dbcrate target check``: probe a target step by step and read its safety settings.

Steps: ``connect`` (targets with a login, i.e. SFTP), ``list``, ``write``, ``read``,
``delete``; each with ok, seconds and the error. The first failing step ends the probe
(a written probe object is still deleted, best effort). Then the bucket settings a
backend can read: ``versioning`` (``enabled``/``suspended``/``disabled``) and
``object_lock`` (S3 Object Lock, GCS retention policy, Azure immutability); a setting
that cannot be read is None with a note, never a failure.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from dbcrate.config import Config, JobConfig
from dbcrate.errors import DbcrateError, StorageError
from dbcrate.storage import Storage, open_target

PROBE_PREFIX = ".dbcrate-probe/"


@dataclass
class Step:
    step: str
    ok: bool
    seconds: float
    error: str | None = None
    hint: str = ""


@dataclass
class ProbeReport:
    target: str
    type: str
    steps: list[Step] = field(default_factory=list)
    versioning: str | None = None
    object_lock: bool | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return bool(self.steps) and all(s.ok for s in self.steps)

    def json(self) -> dict[str, Any]:
        return {"target": self.target, "type": self.type, "ok": self.ok,
                "steps": [{"step": s.step, "ok": s.ok, "seconds": round(s.seconds, 3),
                           "error": s.error} for s in self.steps],
                "versioning": self.versioning, "object_lock": self.object_lock,
                "notes": self.notes}


def _timed(report: ProbeReport, name: str, fn: Callable[[], object]) -> bool:
    t0 = time.monotonic()
    try:
        fn()
    except DbcrateError as exc:
        report.steps.append(Step(name, False, time.monotonic() - t0, exc.message, exc.hint))
        return False
    except Exception as exc:  # an SDK error a backend failed to translate
        report.steps.append(Step(name, False, time.monotonic() - t0,
                                 f"{type(exc).__name__}: {exc}"))
        return False
    report.steps.append(Step(name, True, time.monotonic() - t0))
    return True


def run_check(name: str, kind: str, storage: Storage) -> ProbeReport:
    """Probe ``storage`` (see the module docstring). Never raises a ``DbcrateError``:
    failures are in the report's steps."""
    report = ProbeReport(name, kind)
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    payload = b"dbcrate probe " + key.encode()

    def read() -> None:
        data = b"".join(storage.get(key))
        if data != payload:
            raise StorageError(f"read back {len(data)} bytes, expected {len(payload)}")

    def delete() -> None:
        storage.delete(key)
        if any(o.key == key for o in storage.list(PROBE_PREFIX)):
            raise StorageError("the probe object is still listed after delete")

    connect = getattr(storage, "connect", None)
    ok = _timed(report, "connect", connect) if callable(connect) else True
    ok = ok and _timed(report, "list", lambda: next(iter(storage.list(PROBE_PREFIX)), None))
    wrote = ok and _timed(report, "write", lambda: storage.put(key, [payload]))
    ok = wrote and _timed(report, "read", read)
    if wrote:
        if ok:
            _timed(report, "delete", delete)
        else:
            try:
                storage.delete(key)
            except DbcrateError:
                report.notes.append(f"the probe object {key} could not be removed")
    _settings(storage, report)
    return report


def _settings(storage: Storage, report: ProbeReport) -> None:
    settings = getattr(storage, "settings", None)
    if not callable(settings):
        report.notes.append(f"a {report.type} target has no versioning or object lock")
        return
    try:
        report.versioning, report.object_lock, notes = settings()
    except DbcrateError as exc:
        report.notes.append(f"settings unreadable: {exc.message}")
        return
    report.notes.extend(notes)
    if report.versioning in ("enabled", "suspended") or report.object_lock:
        report.notes.append("versioned or locked: the probe's delete left a version "
                            f"(or delete marker) under {PROBE_PREFIX}")


def check_target(config: Config, name: str) -> tuple[ProbeReport, str]:
    """Probe target ``name`` (``run_check``); the report and where the target points.
    Raises ``UsageError`` (unknown target) or ``ConfigError``; a failing step is in the
    report, not raised. Leaves nothing behind (the probe object is deleted)."""
    target = config.target(name)
    storage = open_target(target)
    return run_check(name, target.type, storage), storage.describe()


def job_grants(job: JobConfig) -> str:
    """The SQL/ACL script that creates the least-privilege role ``job``'s backups need
    (docs/engines/*.md, "Least privilege"). Connects to nothing; holds no secret.
    Raises ``ConfigError`` for a URL the engine cannot parse."""
    from dbcrate.engines.grants import grants

    return grants(job.engine, job.url, job.options)
