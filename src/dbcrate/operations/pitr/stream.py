"""``archive = "stream"``: the agent supervises a ``pg_receivewal`` per job into a small
spool under its state dir, uploads each finished segment (and history file) with
``wal-push``'s logic and, every ``partial_interval``, the open segment as ``.partial``;
restarts the receiver with back-off (docs/pitr.md)."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from dbcrate.catalog import wal
from dbcrate.config import Config, JobConfig
from dbcrate.config.pitr import is_physical, parse_pitr
from dbcrate.engines import Connection
from dbcrate.errors import DbcrateError
from dbcrate.operations.pitr.archive import copies
from dbcrate.operations.pitr.push import push_file
from dbcrate.storage import open_target

log = logging.getLogger("dbcrate.wal")


def stream_jobs(config: Config) -> list[JobConfig]:
    return [j for j in config.jobs.values() if is_physical(j)
            and j.options.get("archive") == "stream"]


def restream(streams: list[Streamer], config: Config, state_dir: Path,
             wake: threading.Event | None = None) -> list[Streamer]:
    """The streams for a reloaded ``config``: those of jobs gone (or changed, or no longer
    streaming) are stopped and joined first (one ``pg_receivewal`` per slot), new ones
    are started; an unchanged job's stream keeps running and ships with ``config``'s
    targets."""
    wanted = {j.name: j for j in stream_jobs(config)}
    kept: list[Streamer] = []
    for streamer in streams:
        if wanted.get(streamer.job.name) == streamer.job and streamer.is_alive():
            streamer.config = config
            kept.append(streamer)
            continue
        streamer.stop()
        streamer.join(30)
        log.info("%s: WAL stream stopped (config reload)", streamer.job.name)
    running = {s.job.name for s in kept}
    for name, job in wanted.items():
        if name not in running:
            streamer = Streamer(config, job, state_dir, wake)
            streamer.start()
            kept.append(streamer)
            log.info("%s: WAL stream started (config reload)", name)
    return kept


class Streamer(threading.Thread):
    """Streams one job's WAL until ``stop()``."""

    def __init__(self, config: Config, job: JobConfig, state_dir: Path,
                 wake: threading.Event | None = None) -> None:
        super().__init__(name=f"wal-{job.name}", daemon=True)
        self.config, self.job = config, job
        self.spool = state_dir / "wal-spool" / job.name
        self.settings = parse_pitr(job.options, where=f"jobs.{job.name}", source=job.source)
        self._halt = threading.Event()
        self._partial_sent: tuple[str, float, int] | None = None
        #: set when the slot was invalidated (a gap): the agent queues a base backup
        self.needs_base = threading.Event()
        #: set with ``needs_base`` (the agent's main loop waits on it)
        self.wake = wake

    def stop(self) -> None:
        self._halt.set()

    def run(self) -> None:
        from dbcrate.engines.postgres.physical.engine import PhysicalEngine
        from dbcrate.engines.postgres.physical.receivewal import Receiver
        from dbcrate.engines.postgres.physical.settings import slot_lost

        self.spool.mkdir(parents=True, exist_ok=True, mode=0o700)
        delay = 1.0
        interval = self.settings.partial_interval.total_seconds()
        while not self._halt.is_set():
            receiver = None
            try:
                engine = PhysicalEngine(Connection(self.job.url, self.job.password,
                                                   self.job.options))
                info = engine.probe()
                conn = Connection(self.job.url, self.job.password, self.job.options)
                if slot_lost(conn, f"dbcrate_{self.job.name}"):
                    log.error("%s: slot dbcrate_%s was invalidated (the WAL it held was "
                              "removed): the archive has a gap; recreating the slot and "
                              "taking a base backup", self.job.name, self.job.name)
                    self.needs_base.set()
                    if self.wake is not None:
                        self.wake.set()
                    self.ship()  # what the spool holds, then pg_receivewal must not
                    for stale in self.spool.glob("*.partial"):  # resume in a segment
                        stale.unlink()  # the server no longer has
                receiver = Receiver(Connection(self.job.url, self.job.password,
                                               self.job.options), f"dbcrate_{self.job.name}",
                                    self.spool, engine.major, info.server_version)
                receiver.start()
                log.info("%s: streaming WAL into %s", self.job.name, self.spool)
                delay = 1.0
                while not self._halt.is_set() and receiver.alive():
                    self.ship()
                    self._halt.wait(interval)
                self.ship()
                if not self._halt.is_set():
                    log.error("%s: pg_receivewal exited: %s", self.job.name, receiver.error())
            except DbcrateError as exc:
                log.error("%s: WAL stream: %s", self.job.name, exc.message)
            finally:
                if receiver is not None:
                    receiver.stop()
            self._halt.wait(delay)
            delay = min(delay * 2, 60.0)

    def ship(self) -> None:
        """Upload what the spool holds: finished files (then removed locally) and the
        open segment as ``.partial`` when it changed. Errors are logged; a file stays in
        the spool until it is stored on every target."""
        storages = {n: open_target(self.config.target(n)) for n in self.job.targets}
        for path in sorted(self.spool.iterdir()):
            name = path.name
            if not wal.is_wal_name(name) or wal.PARTIAL.fullmatch(name):
                continue
            try:
                push_file(self.job, storages, path)
                if wal.SEGMENT.fullmatch(name):
                    for storage in storages.values():
                        for old in copies(storage, self.job.name, f"{name}.partial"):
                            storage.delete(old.key)
                path.unlink()
            except DbcrateError as exc:
                log.error("%s: cannot archive %s: %s", self.job.name, name, exc.message)
                return
        for path in sorted(self.spool.glob("*.partial")):
            st = path.stat()
            mark = (path.name, st.st_mtime, st.st_size)
            if mark == self._partial_sent:
                continue
            try:
                push_file(self.job, storages, path)
                self._partial_sent = mark
            except DbcrateError as exc:
                log.error("%s: cannot archive %s: %s", self.job.name, path.name, exc.message)
