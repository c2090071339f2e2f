"""PITR in the agent: ``max_rpo`` exceeded sends one ``max_rpo`` notification per episode
(a real cluster archiving with ``dbcrate wal-push``, the real agent, a real HTTP receiver)."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

from tests.servers.notify import Receiver
from tests.servers.pitr import JOB, PitrCluster


def _episode(state: Path) -> str | None:
    try:
        with sqlite3.connect(state / "state.sqlite3") as db:
            rows = db.execute("SELECT breach FROM alerts WHERE job = ?",
                              (f"{JOB}/max_rpo",)).fetchall()
    except sqlite3.Error:
        return None
    return str(rows[0][0]) if rows else None


def test_max_rpo_notifies_once_per_episode(http_receiver: Receiver) -> None:
    c = PitrCluster(17, max_rpo="1s").start()
    try:
        c.config.write_text(c.config.read_text() + f'\n[[notify]]\nurl = "json://127.0.0.1:'
                            f'{http_receiver.port}/hook"\non = ["max_rpo"]\n')
        c.sql("CREATE TABLE t (x int)")
        c.switch_and_wait()
        c.sql("INSERT INTO t VALUES (1)")  # WAL the archive does not have yet
        state = c.dir / "state"
        agent = c.dbcrate_popen("agent")
        try:
            warnings = lambda: [p for p in http_receiver.posts  # noqa: E731
                                if p["type"] == "warning"]
            c.wait(lambda: len(warnings()) >= 1 or agent.poll() is not None,
                   "max_rpo notification")
            assert agent.poll() is None
            assert _episode(state) == "exceeded"
            c.switch_and_wait()  # the archive catches up: the episode ends
            c.wait(lambda: _episode(state) == "", "end of the max_rpo episode")
            assert len(warnings()) == 1  # checked again and again, notified once
            c.sql("INSERT INTO t VALUES (2)")  # a new episode
            c.wait(lambda: len(warnings()) >= 2, "second max_rpo notification")
        finally:
            agent.send_signal(signal.SIGTERM)
            stderr = agent.communicate(timeout=60)[1]
        assert agent.returncode == 0, stderr
        posts = warnings()
        assert len(posts) == 2
        assert posts[0]["title"] == f"dbcrate: {JOB} WAL archive behind by more than 1s"
        assert "behind the server" in posts[0]["message"]
        assert "max_rpo" in stderr
    finally:
        c.stop()
