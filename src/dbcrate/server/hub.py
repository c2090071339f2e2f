"""What both listeners share in one server process: settings, the DB, the CA and the
wake-ups of agents waiting in a long-poll when a command is queued for them."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from dbcrate.server.ca import CA
from dbcrate.server.settings import ServerSettings


@dataclass
class Hub:
    settings: ServerSettings
    engine: Engine
    make_session: sessionmaker[Session]
    ca: CA
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _queued: dict[int, int] = field(default_factory=dict)
    _events: dict[int, asyncio.Event] = field(default_factory=dict)
    _loop: asyncio.AbstractEventLoop | None = None

    @contextmanager
    def db(self) -> Iterator[Session]:
        with self.make_session() as s:
            yield s

    def poke(self, agent_id: int) -> None:
        """A command or config change for ``agent_id`` (from any thread): wake its
        long-poll."""
        with self._lock:
            self._queued[agent_id] = self._queued.get(agent_id, 0) + 1
            loop = self._loop
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._wake, agent_id)

    def _wake(self, agent_id: int) -> None:
        ev = self._events.get(agent_id)
        if ev is not None:
            ev.set()

    def generation(self, agent_id: int) -> int:
        with self._lock:
            return self._queued.get(agent_id, 0)

    async def wait(self, agent_id: int, seen: int, timeout: float) -> None:
        """Until ``agent_id`` is poked after generation ``seen``, or ``timeout`` seconds
        (on the event loop: a waiting agent holds no thread)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            self._loop = loop
        deadline = loop.time() + timeout
        while self.generation(agent_id) == seen:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            ev = self._events.setdefault(agent_id, asyncio.Event())
            try:
                await asyncio.wait_for(ev.wait(), remaining)
            except TimeoutError:
                return
            finally:
                ev.clear()
