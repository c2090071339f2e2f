"""The agent after a crash (SIGKILL mid-run: the run is recorded interrupted and its slot
caught up once), and retention after a success refusing to delete when a backup starts
in the future (real PostgreSQL, real local storage)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbcrate import config
from dbcrate.agent.runner import prune
from dbcrate.audit import AuditLog
from tests.lib.agent import Agent, agent_setup, events, ok_runs, runs, table_lock, wait_until
from tests.servers.postgres import PgDatabase


def test_a_killed_agent_leaves_the_slot_unhandled_and_it_is_caught_up_once(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    setup, state = agent_setup(tmp_path, pg_db)
    with table_lock(pg_db):
        agent = Agent(setup.config, state).started()
        wait_until("a run to start", lambda: events(state, "backup.start"), agent)
        agent.kill()  # SIGKILL: no clean-up, the run stays "running" in the state DB
    [stuck] = [r for r in runs(state) if r["result"] == "running"]

    agent = Agent(setup.config, state).started()
    wait_until("the catch-up run", lambda: ok_runs(state, trigger="catchup"), agent)
    assert agent.stop() == 0
    first = next(r for r in runs(state) if r["id"] == stuck["id"])
    assert first["result"] == "interrupted"
    assert len([r for r in runs(state) if r["trigger"] == "catchup"]) == 1
    assert "1 run(s) of a previous agent did not end" in agent.stderr()


def test_retention_deletes_nothing_when_a_backup_starts_in_the_future(
    pg_db: PgDatabase, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    setup, state = agent_setup(tmp_path, pg_db, retention="{ days = 0 }")
    setup.run("backup", check=True)
    setup.run("backup", check=True)
    assert len(setup.list_json("orders")) == 2
    cfg = config.load(setup.config)
    job = cfg.job("orders")
    log = AuditLog(state)
    # seen from ten minutes ago, both backups start in the future: nothing is deleted
    with caplog.at_level(logging.WARNING):
        prune(cfg, log, job, datetime.now(UTC) - timedelta(minutes=10))
    assert "starts more than 5 minutes in the future" in caplog.text
    assert len(setup.list_json("orders")) == 2
    assert not events(state, "retain.delete")
    # seen from now, days = 0 keeps the newest only
    prune(cfg, log, job, datetime.now(UTC))
    [kept] = setup.list_json("orders")
    [deleted] = events(state, "retain.delete", "orders")
    assert deleted["backup_id"] != kept["id"]
    assert deleted["target"] == "local"
