"""``max_rpo`` in the agent (docs/pitr.md): a thread checks each physical job that has a
``max_rpo`` (its ``wal`` status: the newest archived segment against the server) and
sends one ``max_rpo`` notification per episode. An episode starts when ``rpo_seconds``
exceeds ``max_rpo`` and ends at the first check that finds it within; it is kept in the
state DB's ``alerts`` table (key ``JOB/max_rpo``), so an agent restart does not repeat it."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from dbcrate import notify
from dbcrate.agent.logs import event
from dbcrate.agent.state import StateDB
from dbcrate.config import Config, JobConfig
from dbcrate.config.pitr import is_physical, parse_pitr
from dbcrate.errors import DbcrateError
from dbcrate.schedule import format_duration

#: ``alerts`` value while an episode lasts (``""`` once it ended)
EXCEEDED = "exceeded"


def alert_key(job: str) -> str:
    return f"{job}/max_rpo"


def check_every(max_rpo: timedelta) -> float:
    """Seconds between two checks of a job: half its ``max_rpo``, within 1 s .. 30 s."""
    return min(30.0, max(1.0, max_rpo.total_seconds() / 2))


def watched(config: Config) -> list[tuple[JobConfig, timedelta]]:
    """The physical jobs with a ``max_rpo`` (a job whose keys do not parse is skipped:
    ``agent --check`` names it)."""
    out = []
    for job in config.jobs.values():
        if not is_physical(job):
            continue
        try:
            rpo = parse_pitr(job.options, where=f"jobs.{job.name}", source=job.source).max_rpo
        except DbcrateError:
            continue
        if rpo is not None:
            out.append((job, rpo))
    return out


class RpoWatch(threading.Thread):
    """Checks ``max_rpo`` until :meth:`stop`; ``config`` may be replaced (a reload).
    ``send`` delivers a message (it never raises)."""

    def __init__(self, config: Config, db: StateDB,
                 send: Callable[[Config, notify.Message], None]) -> None:
        super().__init__(name="max-rpo", daemon=True)
        self.config = config
        self.db = db
        self.send = send
        self._halt = threading.Event()
        self._next: dict[str, float] = {}

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        while not self._halt.is_set():
            wait = 30.0
            for job, max_rpo in watched(self.config):
                if self._next.get(job.name, 0.0) <= time.monotonic():
                    self._next[job.name] = time.monotonic() + check_every(max_rpo)
                    self.check(self.config, job, max_rpo, datetime.now(UTC))
                wait = min(wait, self._next[job.name] - time.monotonic())
            self._halt.wait(max(0.05, wait))

    def check(self, config: Config, job: JobConfig, max_rpo: timedelta,
              now: datetime) -> None:
        """One check of ``job``: notify at the start of an episode, end it when the RPO
        is within ``max_rpo`` again. Never raises (what cannot be read is no change)."""
        from dbcrate.operations.pitr.status import wal_status

        try:
            doc = wal_status(config, job, now)
        except Exception as exc:  # a thread of the agent must not die of one check
            event(logging.WARNING, f"{job.name}: cannot check max_rpo: {exc}", job=job.name,
                  ev="max_rpo")
            return
        if doc is None or doc["rpo_seconds"] is None:
            return
        key = alert_key(job.name)
        if not doc["max_rpo_exceeded"]:
            if self.db.alerted(key) == EXCEEDED:
                self.db.set_alerted(key, "")
                event(logging.INFO, f"{job.name}: WAL archive within max_rpo again "
                      f"({doc['rpo_seconds']} s)", job=job.name, ev="max_rpo")
            return
        if self.db.alerted(key) == EXCEEDED:
            return
        self.db.set_alerted(key, EXCEEDED)
        shown = format_duration(max_rpo)
        event(logging.WARNING, f"{job.name}: WAL archive is {doc['rpo_seconds']} s behind "
              f"the server (max_rpo {shown})", job=job.name, ev="max_rpo")
        self.send(config, notify.rpo_exceeded(job.name, shown, int(doc["rpo_seconds"]),
                                              doc["last_segment"]))
