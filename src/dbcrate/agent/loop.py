"""The agent's main loop (docs/agent.md).

The main thread keeps time and handles signals; each run is a worker thread (at most
``concurrency`` at once; the rest wait in slot order). Signals:

- SIGTERM / SIGINT: start no new work; running jobs get ``grace_period`` to finish, then
  are aborted with :func:`dbcrate.interrupt.abort` (tracked child tools are killed, the
  backup pipeline sees the interruption before writing a manifest and removes its
  objects); their runs are recorded ``interrupted`` and their slots stay unhandled.
- SIGHUP: reload and validate the config; an invalid one is rejected (logged with file
  and key, audited ``config.reject``) and the old one kept; a valid one applies to runs
  that start from now on (``config.reload``). WAL streams follow it: a removed (or no
  longer streaming) job's stream stops, an added one starts, a changed job's restarts.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import FrameType
from typing import Any

from dbcrate import config as config_mod
from dbcrate import interrupt
from dbcrate.agent import metrics, runner, verifying
from dbcrate.agent.lock import AgentLock
from dbcrate.agent.logs import event
from dbcrate.agent.rpo import RpoWatch
from dbcrate.agent.state import StateDB
from dbcrate.agent.status import exceeded, job_zone, rfc3339
from dbcrate.audit import AuditLog
from dbcrate.config import Config, JobConfig
from dbcrate.errors import DbcrateError
from dbcrate.notify import overdue
from dbcrate.operations.pitr.stream import Streamer, restream, stream_jobs
from dbcrate.schedule import Schedule, format_duration

_IDLE = timedelta(seconds=30)


@dataclass(order=True)
class Pending:
    not_before: datetime
    slot: datetime
    job: str = field(compare=False)
    trigger: str = field(compare=False)
    #: ``backup`` or ``verify`` (the job's ``verify_schedule``)
    kind: str = field(default="backup", compare=False)

    @property
    def key(self) -> str:
        """What one run at a time is kept per: the job, or its verifications."""
        return self.job if self.kind == "backup" else verifying.task_key(self.job)


def now_utc() -> datetime:
    return datetime.now(UTC)


class Agent:
    """One agent on one state dir. :meth:`run` blocks until a stop signal."""

    def __init__(self, config_path: Path, config: Config, state_dir: Path, *,
                 verify_only: bool = False) -> None:
        self.verify_only = verify_only
        self.config_path = config_path
        self.config = config
        self.state_dir = state_dir
        self.lock = AgentLock(state_dir)
        self.db: StateDB | None = None
        self.audit = AuditLog(state_dir)
        self.wake = threading.Event()
        self.mutex = threading.Lock()
        self.stop_signal: int | None = None
        self.reload_wanted = False
        self.running: dict[str, threading.Thread] = {}
        self.pending: list[Pending] = []
        self.next_slot: dict[str, datetime] = {}
        #: one WAL streamer per ``archive = "stream"`` job (docs/pitr.md)
        self.streams: list[Streamer] = []
        #: ``max_rpo`` notifications (not in a ``--verify-only`` agent)
        self.rpo_watch: RpoWatch | None = None
        self.link: Any = None  # the control-plane link of an enrolled agent (agent.remote)
        self.remote_config: Config | None = None

    # -- signals -------------------------------------------------------------------------

    def _on_stop(self, signum: int, frame: FrameType | None) -> None:
        if self.stop_signal is None:
            self.stop_signal = signum
        self.wake.set()

    def _on_hup(self, signum: int, frame: FrameType | None) -> None:
        self.reload_wanted = True
        self.wake.set()

    # -- lifecycle -------------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGTERM/SIGINT; returns 0. Raises ``UsageError`` if another agent
        holds the state dir."""
        self.lock.acquire()
        previous = {s: signal.signal(s, h) for s, h in ((signal.SIGTERM, self._on_stop),
                                                        (signal.SIGINT, self._on_stop),
                                                        (signal.SIGHUP, self._on_hup))}
        try:
            self.db = StateDB(self.state_dir)
            crashed = self.db.crashed(now_utc())
            if crashed:
                event(logging.WARNING, f"{crashed} run(s) of a previous agent did not end; "
                      "recorded as interrupted", ev="agent.start")
            runner.audit_quietly(self.audit, "agent.start")
            self.start_link()
            only = ", verifications only" if self.verify_only else ""
            event(logging.INFO, f"agent started (pid {os.getpid()}, state dir {self.state_dir}, "
                  f"{len(self.tasks())} schedule(s){only})", ev="agent.start")
            self.plan(now_utc())
            self._metrics()
            self.streams = [Streamer(self.config, j, self.state_dir, self.wake)  # "stream"
                            for j in stream_jobs(self.config)]
            for streamer in self.streams:
                streamer.start()
            if not self.verify_only:
                self.rpo_watch = RpoWatch(self.config, self.db, lambda cfg, msg:
                                          runner.send(cfg, self.audit, msg))
                self.rpo_watch.start()
            while self.stop_signal is None:
                if self.reload_wanted:
                    self.reload_wanted = False
                    self.reload()
                if self.remote_config is not None:
                    new, self.remote_config = self.remote_config, None
                    self.install(new)
                now = now_utc()
                for streamer in self.streams:  # an invalidated slot: a new base now
                    if streamer.needs_base.is_set() and not self.active(streamer.job.name):
                        streamer.needs_base.clear()
                        self.pending.append(Pending(now, now, streamer.job.name, "catchup"))
                self.tick(now)
                self.dispatch(now)
                self.check_max_age(now)
                self.wake.wait(self.timeout(now_utc()))
                self.wake.clear()
            self.shutdown()
            return 0
        finally:
            for s, h in previous.items():
                signal.signal(s, h)
            if self.link is not None:
                self.link.close()
            if self.db is not None:
                self.db.close()
            self.lock.release()

    def scheduled(self) -> list[JobConfig]:
        return [j for j in self.config.jobs.values() if j.schedule]

    def schedule(self, job: JobConfig, kind: str = "backup") -> Schedule:
        expr = job.schedule if kind == "backup" else job.verify.schedule
        assert expr is not None
        return Schedule(expr, job_zone(self.config, job))

    def tasks(self) -> list[tuple[str, JobConfig, str]]:
        """``(key, job, kind)`` of every schedule this agent runs: backups (unless
        ``--verify-only``) and the verifications it may run (``verifying.verifiable``)."""
        out = [] if self.verify_only else [(j.name, j, "backup") for j in self.scheduled()]
        return out + [(verifying.task_key(j.name), j, "verify")
                      for j in verifying.verifiable(self.config)]

    def plan(self, now: datetime) -> None:
        """Compute each job's next slot, and queue a catch-up run for a job whose latest
        slot is later than both its first sighting and its last handled slot."""
        assert self.db is not None
        self.next_slot.clear()
        for key, job, kind in self.tasks():
            sched = self.schedule(job, kind)
            nxt = sched.next(now)
            if nxt is not None:
                self.next_slot[key] = nxt
            first, handled = self.db.see(key, now)
            latest = sched.latest(now)
            if latest is None or self.active(key):
                continue
            if latest > first and (handled is None or latest > handled):
                what = "" if kind == "backup" else " verification"
                event(logging.INFO, f"{job.name}{what} missed its slot {rfc3339(latest)}: one "
                      "catch-up run", job=job.name, ev=f"{kind}.start")
                self.pending.append(Pending(now, latest, job.name, "catchup", kind))
        self.pending.sort()

    def active(self, key: str) -> bool:
        with self.mutex:
            return key in self.running or any(p.key == key for p in self.pending)

    def tick(self, now: datetime) -> None:
        """Queue (or record as skipped) every slot that has arrived."""
        assert self.db is not None
        for key, job, kind in self.tasks():
            slot = self.next_slot.get(key)
            if slot is None or slot > now:
                continue
            nxt = self.schedule(job, kind).next(now)
            if nxt is not None:
                self.next_slot[key] = nxt
            if self.active(key) and kind == "verify":
                event(logging.WARNING, f"verification slot {rfc3339(slot)} of {job.name} "
                      "skipped: the previous one is still running", job=job.name,
                      ev="verify.skip")
                continue
            if self.active(key):
                self.db.skipped(job.name, "schedule", slot, now)
                runner.audit_quietly(self.audit, "backup.skip", job=job.name,
                                     trigger="schedule",
                                     error="the previous run of this job was still running")
                event(logging.WARNING, f"slot {rfc3339(slot)} of {job.name} skipped: the "
                      "previous run is still running", job=job.name, ev="backup.skip")
                continue
            jitter = self.config.agent.jitter.total_seconds()
            delay = timedelta(seconds=random.uniform(0, jitter)) if jitter else timedelta(0)  # noqa: S311
            self.pending.append(Pending(slot + delay, slot, job.name, "schedule", kind))
        self.pending.sort()

    def dispatch(self, now: datetime) -> None:
        """Start queued runs, oldest slot first, up to ``concurrency`` at once."""
        assert self.db is not None
        while self.pending:
            with self.mutex:
                if len(self.running) >= self.config.agent.concurrency:
                    return
            ready = [p for p in self.pending if p.not_before <= now]
            if not ready:
                return
            p = min(ready, key=lambda q: q.slot)
            self.pending.remove(p)
            job = self.config.jobs.get(p.job)
            if job is None:  # removed by a reload
                continue
            run_id = self.db.start(job.name, p.trigger, p.slot, now) if p.kind == "backup" else 0
            t = threading.Thread(target=self._work, args=(self.config, job, p, run_id),
                                 name=f"{'job' if p.kind == 'backup' else 'verify'}-{job.name}",
                                 daemon=True)
            with self.mutex:
                self.running[p.key] = t
            t.start()

    def _work(self, config: Config, job: JobConfig, p: Pending, run_id: int) -> None:
        assert self.db is not None
        try:
            if p.kind == "verify":
                verifying.run_scheduled(config, self.db, self.state_dir,
                                        lambda ev, **f: runner.audit_quietly(self.audit, ev, **f),
                                        job, p.trigger, p.slot)
            else:
                runner.run_job(config, self.db, self.audit, job, p.trigger, p.slot, run_id)
        finally:
            with self.mutex:
                self.running.pop(p.key, None)
            self._metrics()
            self.wake.set()

    def timeout(self, now: datetime) -> float:
        # a queued run that is due but waits for a free slot is started when a worker
        # ends (it sets ``wake``), so only future times bound the wait
        times = [*self.next_slot.values(), *(p.not_before for p in self.pending
                                             if p.not_before > now)]
        until = min([now + _IDLE, *times])
        return max(0.0, min((until - now).total_seconds(), _IDLE.total_seconds())) + 0.01

    def check_max_age(self, now: datetime) -> None:
        """Notify once per breach of a job's ``max_age``."""
        assert self.db is not None
        for job in [] if self.verify_only else self.config.jobs.values():
            if job.max_age is None:
                continue
            success = self.db.last_success(job.name)
            if not exceeded(job, success, now):
                continue
            finished = rfc3339(success.finished_at) if success else None
            breach = finished or "none"
            if self.db.alerted(job.name) == breach:
                continue
            self.db.set_alerted(job.name, breach)
            event(logging.WARNING, f"{job.name}: newest successful backup is older than "
                  f"{format_duration(job.max_age)}", job=job.name, ev="max_age")
            runner.send(self.config, self.audit,
                        overdue(job.name, format_duration(job.max_age), finished))

    def start_link(self) -> None:
        """Start the control-plane link if the state dir holds an enrollment."""
        from dbcrate.agent.remote import files

        if files.enrolled(self.state_dir):
            from dbcrate.agent.remote.link import Link

            self.link = Link(files.load(self.state_dir), self.config_path, self.state_dir,
                             self, self.apply_remote)
            self.link.start()

    def apply_remote(self, new: Config) -> None:
        """Called by the link (its thread): install ``new`` in the main loop."""
        self.remote_config = new
        self.wake.set()

    def reload(self) -> None:
        """Re-read the config; keep the old one if the new one is invalid."""
        try:
            new = (self.link.reload_local() if self.link is not None
                   else config_mod.load(self.config_path))
        except DbcrateError as exc:
            event(logging.ERROR, f"config reload rejected, keeping the old config: "
                  f"{exc.message}", ev="config.reject")
            runner.audit_quietly(self.audit, "config.reject", error=exc.message)
            return
        self.install(new)

    def install(self, new: Config) -> None:
        """Use ``new`` for runs that start from now on."""
        self.config = new
        if self.rpo_watch is not None:
            self.rpo_watch.config = new
        runner.audit_quietly(self.audit, "config.reload")
        event(logging.INFO, f"config reloaded ({len(self.scheduled())} scheduled job(s))",
              ev="config.reload")
        self.pending = [p for p in self.pending if p.job in new.jobs]
        self.plan(now_utc())
        self.streams = restream(self.streams, new, self.state_dir, self.wake)
        self._metrics()

    def shutdown(self) -> None:
        """No new work; wait ``grace_period`` for running jobs, then abort them."""
        self.pending.clear()
        for streamer in self.streams:
            streamer.stop()
        if self.rpo_watch is not None:
            self.rpo_watch.stop()
        sig = signal.Signals(self.stop_signal or signal.SIGTERM).name
        with self.mutex:
            threads = list(self.running.values())
        grace = self.config.agent.grace_period.total_seconds()
        if threads:
            shown = format_duration(self.config.agent.grace_period)
            event(logging.INFO, f"{sig}: waiting up to {shown} for {len(threads)} running "
                  "job(s)", ev="agent.stop")
        deadline = now_utc() + timedelta(seconds=grace)
        for t in threads:
            t.join(max(0.0, (deadline - now_utc()).total_seconds()))
        alive = [t for t in threads if t.is_alive()]
        if alive:
            event(logging.WARNING, f"grace period over: aborting {len(alive)} job(s)",
                  ev="agent.stop")
            interrupt.abort(self.stop_signal or signal.SIGTERM)
            for t in alive:
                t.join()
        for streamer in self.streams:
            streamer.join(30)
        if self.rpo_watch is not None:
            self.rpo_watch.join(30)
        self._metrics()
        runner.audit_quietly(self.audit, "agent.stop", error=None)
        event(logging.INFO, f"agent stopped ({sig})", ev="agent.stop")

    def _metrics(self) -> None:
        if self.db is None:
            return
        try:
            metrics.write(self.config, self.db)
        except OSError as exc:
            event(logging.WARNING, f"cannot write the metrics file: {exc.strerror or exc}",
                  ev="metrics")
