"""``STATE_DIR/agent.lock``: one agent per state dir (an exclusive ``flock`` held for the
agent's lifetime; the file holds the holder's pid)."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from dbcrate.errors import UsageError

FILE_NAME = "agent.lock"


class AgentLock:
    """Hold the lock with :meth:`acquire`, give it up with :meth:`release`."""

    def __init__(self, state_dir: Path) -> None:
        self.path = state_dir / FILE_NAME
        self.fd: int | None = None

    def acquire(self) -> None:
        """Take the lock. Raises ``UsageError`` (exit 2) naming the pid holding it.
        Not re-entrant."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            pid = holder(self.path.parent)
            raise UsageError(
                f"another agent (pid {pid if pid else 'unknown'}) holds {self.path}",
                hint="stop that agent first, or give this one its own --state-dir") from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, 0)
            os.close(self.fd)
            self.fd = None


def holder(state_dir: Path) -> int | None:
    """The pid of the running agent on ``state_dir``, or None if no agent holds the lock."""
    path = state_dir / FILE_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError:
            text = os.pread(fd, 64, 0).decode("ascii", "replace").strip()
            return int(text) if text.isdigit() else 0
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
