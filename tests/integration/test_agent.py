"""The real ``dbcrate agent`` on real PostgreSQL, with 6-field (seconds) schedules.

Tests wait on the agent's state (audit log, state DB), never on fixed sleeps, and assert
outcomes: restored data equals the source, run records never overlap, an aborted run
leaves no object. A "slow" job is a pg_dump blocked on a table lock the test holds.
"""

from __future__ import annotations

import json
import signal
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from dbcrate.schedule import Schedule
from tests.lib.agent import (
    EVERY_2S,
    Agent,
    agent_setup,
    events,
    ok_runs,
    runs,
    table_lock,
    wait_until,
)
from tests.lib.procs import files_under
from tests.servers.postgres import PgDatabase


def test_scheduled_runs_restore_prune_metrics_status_json_logs(
    pg_db: PgDatabase, pg_db_name: str, tmp_path: Path
) -> None:
    setup, state = agent_setup(tmp_path, pg_db, retention="{ days = 0 }",
                               metrics_file=str(tmp_path / "dbcrate.prom"))
    agent = Agent(setup.config, state, ("--log-format", "json")).started()
    try:
        wait_until("two scheduled runs", lambda: len(ok_runs(state, trigger="schedule")) >= 2,
                   agent)
        second = Agent(setup.config, state)
        assert second.wait() == 2
        assert f"another agent (pid {agent.proc.pid}) holds" in second.stderr()
        status = setup.run("status", "--json")
        assert status.returncode == 0, status.stderr
        doc = json.loads(status.stdout)
        assert doc["agent"] == {"running": True, "pid": agent.proc.pid}
    finally:
        assert agent.stop() == 0
    for line in agent.stderr().splitlines():  # every stderr line is a JSON object
        obj = json.loads(line)
        assert {"ts", "level", "msg"} <= set(obj)

    done = ok_runs(state)
    # prune after each success: days = 0 keeps only the newest
    assert events(state, "retain.delete", "orders")
    listed = setup.list_json("orders")
    assert [b["id"] for b in listed] == [done[-1]["backup_id"]]
    setup.run("restore", "orders", "--latest", "--to", pg_db.server.url(pg_db_name),
              check=True)
    from dbcrate.sandbox.sample import table_checksums
    assert table_checksums(pg_db.server.url(pg_db_name), password=pg_db.password) == \
        pg_db.checksums()

    [job] = json.loads(setup.run("status", "--json", check=True).stdout)["jobs"]
    assert job["last_run"]["result"] == "ok"
    assert job["last_run"]["trigger"] == "schedule"
    assert job["last_success"]["backup_id"] == done[-1]["backup_id"]
    assert job["timezone"] == "UTC" and job["schedule"] == EVERY_2S
    assert job["next_run"].endswith("Z")

    families = {f.name: f for f in text_string_to_metric_families(
        (tmp_path / "dbcrate.prom").read_text())}
    sample = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for f in families.values() for s in f.samples}
    assert sample[("dbcrate_last_run_ok", (("job", "orders"),))] == 1
    assert sample[("dbcrate_last_backup_size_bytes", (("job", "orders"),))] == done[-1]["size"]
    assert sample[("dbcrate_runs_total", (("job", "orders"), ("result", "ok")))] == len(done)
    assert ("dbcrate_next_run_timestamp_seconds", (("job", "orders"),)) in sample
    assert setup.run("audit", "verify", check=True).returncode == 0


def test_stop_across_two_slots_then_exactly_one_catchup_none_for_a_new_job(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    setup, state = agent_setup(tmp_path, pg_db)
    agent = Agent(setup.config, state).started()
    wait_until("a scheduled run", lambda: ok_runs(state), agent)
    assert agent.stop() == 0
    last = max(datetime.fromtimestamp(r["slot"], UTC) for r in ok_runs(state))
    sched = Schedule(EVERY_2S)
    missed = sched.next_runs(last, 2)
    # stopped across two slots (waiting on the clock, not asserting on it)
    wait_until("two missed slots", lambda: datetime.now(UTC) > missed[1])
    text = setup.config.read_text()
    block = text[text.index("[[backup.jobs]]"):text.index("[agent]")]
    setup.config.write_text(text.replace("[agent]", block.replace(
        'name = "orders"', 'name = "fresh"') + "\n[agent]"))

    agent = Agent(setup.config, state).started()
    wait_until("the catch-up run", lambda: ok_runs(state, trigger="catchup"), agent)
    catchup_start = ok_runs(state, trigger="catchup")[0]["started_at"]
    wait_until("a scheduled slot after the catch-up", lambda: [
        r for r in runs(state, "orders") if r["trigger"] == "schedule"
        and r["started_at"] > catchup_start and r["result"] != "running"], agent)
    wait_until("fresh to run on schedule", lambda: ok_runs(state, "fresh"), agent)
    assert agent.stop() == 0
    catchups = [r for r in runs(state) if r["trigger"] == "catchup"]
    assert len(catchups) == 1
    assert catchups[0]["job"] == "orders"
    assert datetime.fromtimestamp(catchups[0]["slot"], UTC) >= missed[1]


def _overlap(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return a["started_at"] < b["finished_at"] and b["started_at"] < a["finished_at"]


def test_slow_job_skipped_never_overlapping_concurrency_never_exceeded(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    setup, state = agent_setup(tmp_path, pg_db, schedule="* * * * * *", extra_jobs=("other",),
                               concurrency=1)
    with table_lock(pg_db):
        agent = Agent(setup.config, state).started()
        wait_until("skipped slots of both jobs", lambda: all(
            sum(r["result"] == "skipped" for r in runs(state, j)) >= 2
            for j in ("orders", "other")), agent)
    wait_until("both jobs to succeed", lambda: ok_runs(state, "orders")
               and ok_runs(state, "other"), agent)
    assert agent.stop() == 0
    ran = [r for r in runs(state) if r["result"] in ("ok", "failed", "interrupted")]
    assert len(ran) >= 2
    for i, a in enumerate(ran):
        for b in ran[i + 1:]:
            assert not _overlap(a, b), (a, b)  # concurrency = 1: never two at once
    skipped = [r for r in runs(state) if r["result"] == "skipped"]
    assert all(r["error"] for r in skipped)
    assert len(events(state, "backup.skip")) == len(skipped)


def test_sigterm_inside_the_grace_period_lets_the_job_finish(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    setup, state = agent_setup(tmp_path, pg_db, schedule="*/1 * * * * *", grace_period="10m")
    with table_lock(pg_db):
        agent = Agent(setup.config, state).started()
        wait_until("a run to start", lambda: events(state, "backup.start"), agent)
        agent.send(signal.SIGTERM)
        wait_until("the agent to wait for the job", lambda: "waiting up to 10m"
                   in agent.stderr(), agent)
    assert agent.stop() == 0
    [run] = [r for r in runs(state) if r["result"] != "skipped"]
    assert run["result"] == "ok"
    assert [b["id"] for b in setup.list_json("orders")] == [run["backup_id"]]
    assert events(state, "agent.stop")


def test_sigterm_past_the_grace_period_aborts_without_a_trace(
    pg_db: PgDatabase, tmp_path: Path
) -> None:
    setup, state = agent_setup(tmp_path, pg_db, schedule="*/1 * * * * *", grace_period="1s")
    with table_lock(pg_db):
        agent = Agent(setup.config, state).started()
        wait_until("a run to start", lambda: events(state, "backup.start"), agent)
        assert agent.stop(signal.SIGTERM) == 0
    assert "grace period over: aborting 1 job(s)" in agent.stderr()
    [run] = [r for r in runs(state) if r["result"] != "skipped"]
    assert run["result"] == "interrupted"
    backups = tmp_path / "backups"
    assert not backups.exists() or files_under(backups) == []  # no manifest, no object
    assert not events(state, "backup.ok")
    import sqlite3
    conn = sqlite3.connect(state / "state.sqlite3")
    assert conn.execute("SELECT last_handled FROM jobs WHERE job = 'orders'").fetchone() == \
        (None,)  # the aborted slot is not handled: the next start catches it up
    conn.close()


def test_sighup_with_a_bad_zone_keeps_the_old_config(pg_db: PgDatabase, tmp_path: Path) -> None:
    setup, state = agent_setup(tmp_path, pg_db)
    good = setup.config.read_text()
    agent = Agent(setup.config, state).started()
    try:
        setup.config.write_text(good.replace(f'schedule = "{EVERY_2S}"',
                                             f'schedule = "{EVERY_2S}"\n'
                                             'timezone = "Mars/Olympus"'))
        agent.send(signal.SIGHUP)
        [reject] = wait_until("config.reject", lambda: events(state, "config.reject"), agent)
        assert reject["error"] == (f"{setup.config}: backup.jobs[0].timezone: unknown time "
                                   "zone 'Mars/Olympus'")
        assert f"{setup.config}: backup.jobs[0].timezone" in agent.stderr()
        seq = reject["seq"]
        wait_until("a run on the old config", lambda: [
            r for r in events(state, "backup.ok") if r["seq"] > seq], agent)
        setup.config.write_text(good.replace(EVERY_2S, "*/3 * * * * *"))
        agent.send(signal.SIGHUP)
        wait_until("config.reload", lambda: events(state, "config.reload"), agent)
    finally:
        assert agent.stop() == 0
    assert setup.run("audit", "verify").returncode == 0
