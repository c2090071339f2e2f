"""``pg_receivewal --synchronous --slot dbcrate_JOB`` into a spool directory (the agent's
``archive = "stream"``), the slot created if missing. The process is the caller's to
supervise (``operations/pitr/stream.py``)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from dbcrate import interrupt
from dbcrate.engines.base import Connection
from dbcrate.engines.postgres.options import PgOptions
from dbcrate.engines.postgres.physical.settings import ensure_slot
from dbcrate.engines.postgres.tools import resolve
from dbcrate.engines.postgres.url import PgTarget
from dbcrate.engines.process import child_env, materialized


class Receiver:
    """One pg_receivewal for a job."""

    def __init__(self, connection: Connection, slot: str, spool: Path, major: int,
                 version: str) -> None:
        self.connection = connection
        self.target = PgTarget.parse(connection.url, connection.password)
        self.tools = resolve(major, version, PgOptions.parse(connection.options).tool_options())
        self.slot = slot
        self.spool = spool
        self.proc: subprocess.Popen[bytes] | None = None
        self._env_cm = materialized(self.target.tool_env())
        self._env: dict[str, str] | None = None

    def _argv(self, *extra: str) -> list[str]:
        return [self.tools.tool("pg_receivewal"), "--no-password", "--slot", self.slot,
                "-d", self.target.tool_conninfo(), *extra]

    def start(self) -> None:
        """Create the slot if missing (holding WAL from then on: ``ensure_slot``), then
        start streaming. Raises ``DatabaseError`` if the slot cannot be created,
        ``ToolNotFound``."""
        ensure_slot(self.connection, self.slot)
        if self._env is None:
            self._env = child_env(self._env_cm.__enter__())
        with interrupt.critical():
            self.proc = subprocess.Popen(
                self._argv("-D", str(self.spool), "--synchronous", "-n"), env=self._env,
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def error(self) -> str:
        """What the exited receiver said (scrubbed)."""
        if self.proc is None or self.proc.stderr is None:
            return ""
        return self.target.scrub(self.proc.stderr.read().decode("utf-8", "replace"))[-500:]

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self._env is not None:
            self._env_cm.__exit__(None, None, None)
            self._env = None
