"""What both listeners share in one server process: settings, the DB, the CA and the
wake-ups of agents waiting in a long-poll when a command is queued for them."""

from __future__ import annotations

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
    _cond: threading.Condition = field(default_factory=threading.Condition)
    _queued: dict[int, int] = field(default_factory=dict)

    @contextmanager
    def db(self) -> Iterator[Session]:
        with self.make_session() as s:
            yield s

    def poke(self, agent_id: int) -> None:
        """A command was queued for ``agent_id``: wake its long-poll."""
        with self._cond:
            self._queued[agent_id] = self._queued.get(agent_id, 0) + 1
            self._cond.notify_all()

    def generation(self, agent_id: int) -> int:
        with self._cond:
            return self._queued.get(agent_id, 0)

    def wait(self, agent_id: int, seen: int, timeout: float) -> None:
        """Block until a command is queued for ``agent_id`` after ``seen``, or
        ``timeout`` seconds."""
        with self._cond:
            self._cond.wait_for(lambda: self._queued.get(agent_id, 0) != seen, timeout)
