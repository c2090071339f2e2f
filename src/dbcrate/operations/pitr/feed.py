"""Serving a recovery server's ``restore_command`` during ``restore --pitr``: the WAL it
asks for is fetched, decrypted and digest-checked here (the key never reaches the
server) and handed over through the spool (``spool.py``).

Replaying a 16 MiB segment takes PostgreSQL a few tens of milliseconds, so a segment
fetched only once it is asked for would cost as much again in waiting. The feeder keeps
a window of segments ready ahead of the newest one the server asked for or took, on
that segment's timeline, starting at the base's first segment before the server starts.
The window is bounded in bytes (``WINDOW_BYTES``): the spool holds at most that much
decoded WAL, and at most ``WORKERS`` segments are in memory being fetched.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

from dbcrate.catalog import wal
from dbcrate.config import JobConfig
from dbcrate.engines.postgres.physical.recovery import RecoveryServer, RecoveryState
from dbcrate.errors import DbcrateError, RestoreFailed
from dbcrate.operations.pipeline import KeyMaterial
from dbcrate.operations.pitr.archive import ArchiveInfo
from dbcrate.operations.pitr.fetch import read_wal
from dbcrate.operations.pitr.spool import Spool
from dbcrate.storage import Storage

#: decoded WAL kept ready ahead of replay (at least two segments, whatever their size)
WINDOW_BYTES = 128 << 20
#: segments fetched at once
WORKERS = 2
#: how often the spool and the server's log are looked at (seconds)
POLL = 0.01


class Feeder:
    """Answers the server's requests from the archive and fetches ahead. Not atomic: a
    failure leaves fetched segments in the spool, which the caller removes."""

    def __init__(self, spool: Spool, storage: Storage, job: JobConfig,
                 by_name: dict[str, wal.WalObject], keys: KeyMaterial, seg_size: int,
                 info: ArchiveInfo | None,
                 fetch: Callable[[Storage, JobConfig, wal.WalObject, KeyMaterial,
                                  ArchiveInfo | None], bytes] = read_wal) -> None:
        self.spool, self.storage, self.job = spool, storage, job
        self.fetch = fetch
        self.by_name, self.keys, self.seg_size, self.info = by_name, keys, seg_size, info
        self.window = max(2, WINDOW_BYTES // seg_size)
        self.pool = ThreadPoolExecutor(max_workers=WORKERS, thread_name_prefix="wal-fetch")
        self.inflight: dict[str, Future[bytes]] = {}
        self.errors: dict[str, DbcrateError] = {}
        self.ready: set[str] = set()  # put into the spool, not taken yet
        self.newest: dict[int, int] = {}  # per timeline: the newest segment asked or taken
        self.timeline = 0  # the timeline of the last segment asked or taken
        self.handed = 0  # files the server took from the spool
        self._closed = False

    def stored(self, name: str) -> wal.WalObject | None:
        """The object for ``name``: the segment, else (the newest, streamed) its
        ``.partial``, which replay reads up to its last valid record."""
        obj = self.by_name.get(name)
        if obj is None and wal.SEGMENT.fullmatch(name):
            obj = self.by_name.get(f"{name}.partial")
        return obj

    def start_at(self, tli: int, segno: int) -> None:
        """Begin fetching at segment ``segno`` of ``tli`` (the base's first)."""
        self.newest[tli] = segno - 1
        self.timeline = tli
        self._ahead()

    def _fetch(self, name: str) -> None:
        obj = self.stored(name)
        if obj is not None and name not in self.inflight and name not in self.ready \
                and name not in self.errors:
            self.inflight[name] = self.pool.submit(self.fetch, self.storage, self.job, obj,
                                                   self.keys, self.info)

    def _seen(self, name: str) -> None:
        """The server asked for or took ``name``: move the window there."""
        if wal.SEGMENT.fullmatch(name) and self.stored(name) is not None:
            tli, segno = wal.parse_segment(name, self.seg_size)
            self.newest[tli] = max(segno, self.newest.get(tli, segno))
            self.timeline = tli

    def _ahead(self) -> None:
        tli = self.timeline
        if tli not in self.newest:
            return
        segno = self.newest[tli]
        for n in range(1, self.window + 1):
            if len(self.ready) + len(self.inflight) >= self.window:
                return
            name = wal.segment_name(tli, segno + n, self.seg_size)
            if self.stored(name) is None:
                return
            self._fetch(name)

    def step(self) -> None:
        """One round: answer requests, note what was taken, hand over what was fetched,
        top the window up. Raises the error of a damaged object the server asked for."""
        spool = self.spool
        for name in spool.wanted():
            if spool.is_ready(name):
                spool.answered(name)
            elif name in self.errors:
                spool.fail(name)
                raise self.errors[name]
            elif self.stored(name) is None:
                spool.none(name)
            else:
                self._fetch(name)
            self._seen(name)
        for name in [n for n in self.ready if not spool.is_ready(n)]:
            self.ready.discard(name)
            self.handed += 1
            self._seen(name)
        for name, fut in list(self.inflight.items()):
            if fut.done():
                del self.inflight[name]
                exc = fut.exception()
                if isinstance(exc, DbcrateError):
                    self.errors[name] = exc
                elif exc is not None:
                    raise exc
                else:
                    spool.put(name, fut.result())
                    self.ready.add(name)
        self._ahead()

    def close(self) -> None:
        """Stop fetching (waits for the fetches running now) and close the spool.
        Idempotent."""
        if not self._closed:
            self._closed = True
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.spool.close()


def serve(server: RecoveryServer, feeder: Feeder) -> RecoveryState:
    """Feed ``server`` until it reaches its target. Raises the error of a damaged object
    it asked for, or ``RestoreFailed`` with its log; closes the feeder either way."""
    try:
        while True:
            feeder.step()
            state = server.wait(POLL)
            if state.done:
                return state
            if state.failed:
                raise RestoreFailed(f"the recovery server stopped: {state.failed}",
                                    hint=f"its log:\n{server.tail()}")
    finally:
        feeder.close()
