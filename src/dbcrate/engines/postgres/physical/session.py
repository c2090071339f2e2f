"""One PostgreSQL session held open by a ``psql`` process, asked one query at a time.

A base backup keeps a temporary replication slot for as long as it runs, and a slot lives
as long as its session: this is that session, without psycopg (whose import costs a
command ~0.13 s). The slot goes when the session ends: ``close()``, or dbcrate dying
(psql reads EOF on its stdin and exits).
"""

from __future__ import annotations

import subprocess
from contextlib import ExitStack

from dbcrate.engines.postgres.connect import PSQL_CONNECTION, classify
from dbcrate.engines.postgres.url import PgTarget
from dbcrate.engines.process import child_env, materialized


class PsqlSession:
    """``psql -XAtq`` on ``target``, reading queries from a pipe. Not thread-safe."""

    def __init__(self, psql: str, target: PgTarget) -> None:
        """Start psql (it connects when asked its first query). Raises ``OSError`` when
        psql cannot run or the private service file of ``target``'s secrets cannot be
        written."""
        self._target = target
        self.error = ""  # what psql said on stderr once it has ended
        # the service file must outlive psql's connecting: released after the first answer
        self._secrets = ExitStack()
        env = self._secrets.enter_context(materialized(target.tool_env()))
        try:
            self._proc = subprocess.Popen(
                [psql, "-XAtq", "--no-password", "-v", "ON_ERROR_STOP=1",
                 "-d", target.tool_conninfo()],
                env=child_env(env), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                stderr=subprocess.PIPE, text=True)
        except BaseException:
            self._secrets.close()
            raise

    def row(self, query: str) -> list[str] | None:
        """The first row of ``query`` (one statement, one row of output), its columns as
        text; None when the query failed (psql has then ended: the session is over; its
        message is in ``error``). A failed connection raises its ``classify`` error."""
        proc = self._proc
        assert proc.stdin is not None and proc.stdout is not None
        try:
            proc.stdin.write(query.rstrip().rstrip(";") + ";\n")
            proc.stdin.flush()
            line = proc.stdout.readline()
        except (BrokenPipeError, OSError):
            line = ""
        self._secrets.close()  # idempotent
        if line:
            return line.rstrip("\n").split("|")
        self.close()
        if proc.returncode == PSQL_CONNECTION:
            raise classify(self._target, self.error)
        return None

    def close(self) -> None:
        """End the session (its temporary slots go with it). Idempotent; raises nothing."""
        proc = self._proc
        if proc.returncode is None:
            assert proc.stdin is not None and proc.stdout is not None
            assert proc.stderr is not None
            try:
                proc.stdin.close()  # EOF: psql ends the session and exits
            except OSError:
                pass
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            self.error = proc.stderr.read().strip()  # a few lines at most
            proc.stdout.close()
            proc.stderr.close()
        self._secrets.close()
