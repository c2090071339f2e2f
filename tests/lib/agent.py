"""Helpers for agent tests: a config with [agent] and schedules, the real ``dbcrate
agent`` as a subprocess, and waiting on its state (audit log, state DB), never on time."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import psycopg

from tests.lib.e2e import DBCRATE, Setup, local_target, make_setup
from tests.servers.postgres import PgDatabase

#: how long a wait on the agent's state may take at most before the test gives up (this
#: only bounds a hang; no assertion depends on how long anything took)
PATIENCE = 180.0


def agent_table(state: Path, **extra: Any) -> str:
    lines = ["[agent]", f"state_dir = {json.dumps(str(state))}"]
    for k, v in extra.items():
        lines.append(f"{k} = {json.dumps(v)}")
    return "\n".join(lines) + "\n"


def audit_records(state: Path) -> list[dict[str, Any]]:
    path = state / "audit.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def events(state: Path, event: str, job: str | None = None) -> list[dict[str, Any]]:
    return [r for r in audit_records(state)
            if r["event"] == event and (job is None or r.get("job") == job)]


def runs(state: Path, job: str | None = None) -> list[dict[str, Any]]:
    db = state / "state.sqlite3"
    if not db.exists():
        return []
    conn = sqlite3.connect(db, timeout=30)
    conn.row_factory = sqlite3.Row
    try:
        sql = "SELECT * FROM runs" + (" WHERE job = ?" if job else "") + " ORDER BY id"
        return [dict(r) for r in conn.execute(sql, (job,) if job else ())]
    except sqlite3.OperationalError:
        return []
    finally:
        conn.close()


def wait_until(what: str, check: Callable[[], Any], proc: Agent | None = None) -> Any:
    """Poll ``check`` until it returns something truthy (fail after PATIENCE, or at once
    if the agent process died)."""
    deadline = time.monotonic() + PATIENCE
    while True:
        value = check()
        if value:
            return value
        if proc is not None and proc.proc.poll() is not None:
            raise AssertionError(f"agent exited ({proc.proc.returncode}) while waiting for "
                                 f"{what}\nstderr:\n{proc.stderr()}")
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}"
                                 + (f"\nstderr:\n{proc.stderr()}" if proc else ""))
        time.sleep(0.1)


@dataclass
class Agent:
    """The real ``dbcrate agent`` running on ``config``."""

    config: Path
    state: Path
    args: tuple[str, ...] = ()
    proc: subprocess.Popen[bytes] = field(init=False)
    log: IO[bytes] = field(init=False)
    starts_before: int = field(init=False)

    def __post_init__(self) -> None:
        self.starts_before = len(events(self.state, "agent.start"))
        self.log_path = self.state.parent / f"agent-{time.monotonic_ns()}.log"
        self.log = open(self.log_path, "wb")  # noqa: SIM115
        self.proc = subprocess.Popen([DBCRATE, "--config", str(self.config), "agent",
                                      *self.args], stdout=self.log, stderr=subprocess.STDOUT,
                                     env=os.environ.copy())

    def stderr(self) -> str:
        if not self.log.closed:
            self.log.flush()
        return self.log_path.read_text(errors="replace")

    def started(self) -> Agent:
        wait_until("agent.start", lambda: len(events(self.state, "agent.start"))
                   > self.starts_before, self)
        return self

    def send(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        code = self.proc.wait(timeout=PATIENCE)
        self.log.close()
        return code

    def wait(self) -> int:
        """Wait for the agent to exit on its own; its exit code."""
        code = self.proc.wait(timeout=PATIENCE)
        self.log.close()
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=PATIENCE)
        self.log.close()


EVERY_2S = "*/2 * * * * *"


def agent_setup(tmp: Path, db: PgDatabase, *, schedule: str = EVERY_2S,
                extra_jobs: tuple[str, ...] = (), retention: str | None = None,
                **agent: Any) -> tuple[Setup, Path]:
    state = tmp / "state"
    setup = make_setup(tmp, url=db.url, password=db.password, encryption="none",
                       targets=[local_target(tmp / "backups")],
                       job_extra={"schedule": schedule})
    text = setup.config.read_text()
    if retention:
        text = text.replace("[[backup.jobs]]", f"[[backup.jobs]]\nretention = {retention}")
    for name in extra_jobs:  # more jobs on the same database
        block = text[text.index("[[backup.jobs]]"):]
        text += "\n" + block.replace('name = "orders"', f'name = "{name}"')
    setup.config.write_text(text + "\n" + agent_table(state, **agent))
    return setup, state


@contextmanager
def table_lock(db: PgDatabase) -> Iterator[psycopg.Connection[Any]]:
    """Hold an ACCESS EXCLUSIVE lock that makes pg_dump of ``db`` wait until released."""
    with db.server.connect(db.name) as setup_conn:
        setup_conn.execute("CREATE TABLE IF NOT EXISTS slowlock (x int)")
    conn = db.server.connect(db.name)
    conn.execute("BEGIN")
    conn.execute("LOCK TABLE slowlock IN ACCESS EXCLUSIVE MODE")
    try:
        yield conn
    finally:
        conn.execute("ROLLBACK")
        conn.close()


def ok_runs(state: Path, job: str = "orders", trigger: str | None = None) -> list[dict[str, Any]]:
    return [r for r in runs(state, job)
            if r["result"] == "ok" and (trigger is None or r["trigger"] == trigger)]
