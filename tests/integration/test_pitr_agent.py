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
    c = PitrCluster(17, max_rpo="2s").start()
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
        assert posts[0]["title"] == f"dbcrate: {JOB} WAL archive behind by more than 2s"
        assert "behind the server" in posts[0]["message"]
        assert "max_rpo" in stderr
    finally:
        c.stop()


def test_reload_stops_and_starts_streams_and_an_invalidated_slot_takes_a_base(
        tmp_path: Path) -> None:
    """SIGHUP: a job no longer streaming stops its pg_receivewal (the slot stays); while it
    is stopped the slot is invalidated (max_slot_wal_keep_size); streaming again after the
    next SIGHUP, the agent drops and recreates the slot and takes a base backup."""
    c = PitrCluster(17, archive_command=False, archive="stream", partial_interval="1s")
    c.server._settings["max_slot_wal_keep_size"] = "32MB"
    c.start()
    # a base backup still waiting for its stop segment at SIGTERM must not hold the stop
    streamed = c.config.read_text().replace("[agent]\n", '[agent]\ngrace_period = "5s"\n')
    c.config.write_text(streamed)
    streaming = lambda: c.sql("SELECT count(*) FROM pg_stat_replication")[0][0]  # noqa: E731
    slot = lambda: c.sql("SELECT active, wal_status FROM pg_replication_slots "  # noqa: E731
                         "WHERE slot_name = 'dbcrate_pitr'")
    agent = c.dbcrate_popen("-v", "agent")
    try:
        c.wait(lambda: streaming() == 1 or agent.poll() is not None, "WAL stream")
        c.config.write_text(streamed.replace('archive = "stream"\n', ""))
        agent.send_signal(signal.SIGHUP)
        c.wait(lambda: streaming() == 0, "stream stopped by the reload")
        assert slot()[0][0] is False
        c.sql("CREATE TABLE t (x text)")
        for _ in range(8):  # more WAL than max_slot_wal_keep_size, then a checkpoint
            c.sql("INSERT INTO t VALUES ('x')")
            c.sql("SELECT pg_switch_wal()")
        c.wait(lambda: c.sql("CHECKPOINT") == [] and slot()[0][1] == "lost",
               "invalidated slot")
        manifests = lambda: list(c.store.joinpath(JOB).glob("2*/**/*.manifest.json"))  # noqa: E731
        assert not manifests()
        c.config.write_text(streamed)
        agent.send_signal(signal.SIGHUP)
        c.wait(lambda: manifests() or agent.poll() is not None, "base backup after the gap",
               limit=90)
        assert agent.poll() is None
        assert [b["kind"] for b in c.dbcrate_list()] == ["base"]
        assert slot()[0][1] != "lost"
        c.wait(lambda: streaming() == 1, "WAL stream after the gap")
    finally:
        agent.send_signal(signal.SIGTERM)
        try:
            stderr = agent.communicate(timeout=60)[1]
            print(stderr[-4000:])  # shown when the test fails
        finally:
            if agent.poll() is None:
                agent.kill()
            c.stop()
    assert agent.returncode == 0, stderr[-3000:]
    assert "WAL stream stopped (config reload)" in stderr
    assert "was invalidated" in stderr
