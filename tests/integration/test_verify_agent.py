"""Verifications in the agent, the audit log and ``dbcrate status`` (real PostgreSQL, the
real ``dbcrate agent``): a ``--verify-only`` agent with ``[agent] verify_identity_file``
runs the job's ``verify_schedule`` (one verification), audits it and ``status --json``
shows it; an agent without the identity skips the schedule, saying so once; a manual
verification's alarm makes ``status`` exit 12. Waits on the agent's state, never on time."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lib.agent import EVERY_2S, Agent, agent_table, events, wait_until
from tests.lib.e2e import local_target, make_setup
from tests.servers.postgres import PgDatabase


@pytest.fixture
def vdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dbcrate-verify-test-"))
    path.chmod(0o755)  # reachable by the sandbox user when run as root
    yield path
    left = sorted(p.name for p in path.iterdir())
    shutil.rmtree(path)
    assert left == [], left


def test_verify_only_agent_runs_verify_schedule_audits_and_status_shows_it(
        pg_db: PgDatabase, tmp_path: Path, vdir: Path) -> None:
    state = tmp_path / "state"
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")],
                       job_extra={"verify_schedule": EVERY_2S, "verify_dir": str(vdir),
                                  "schedule": EVERY_2S})
    base = setup.config.read_text()
    setup.config.write_text(base + "\n" + agent_table(state))
    setup.run("backup", "orders", check=True)

    # a backup host's agent: no identity, so the verify_schedule is skipped (logged once)
    plain = Agent(setup.config, state).started()
    try:
        wait_until("a scheduled backup", lambda: events(state, "backup.ok", "orders"), plain)
        wait_until("the skip notice", lambda: "verify_schedule skipped" in plain.stderr(),
                   plain)
    finally:
        assert plain.stop() == 0
    assert plain.stderr().count("verify_schedule skipped") == 1
    assert events(state, "verify.start") == []

    setup.config.write_text(base + "\n" + agent_table(
        state, verify_identity_file=str(setup.identity)))
    backups_before = len(events(state, "backup.start"))
    agent = Agent(setup.config, state, ("--verify-only",)).started()
    try:
        [ok] = wait_until("a verification", lambda: events(state, "verify.ok", "orders"), agent)
    finally:
        assert agent.stop() == 0
    assert len(events(state, "backup.start")) == backups_before  # verifications only
    [start] = [e for e in events(state, "verify.start", "orders") if e["seq"] < ok["seq"]][-1:]
    assert start["trigger"] in ("schedule", "catchup")
    newest = setup.list_json("orders")[-1]
    assert ok["backup_id"] == newest["id"] and ok["server"] and ok["restore_seconds"] >= 0
    record = tmp_path / "backups" / ok["record"]
    assert ok["record_sha256"] == hashlib.sha256(record.read_bytes()).hexdigest()

    status = setup.run("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    [job] = json.loads(status.stdout)["jobs"]
    v = job["verify"]
    last_ok = events(state, "verify.ok", "orders")[-1]  # one more may end in the grace period
    assert v["last"]["result"] == "pass"
    assert v["last"]["record_sha256"] == last_ok["record_sha256"]
    assert v["next_run"].endswith("Z") and len(v["days"]) == 14
    assert v["days"][-1]["result"] == "pass"

    # a manual verification with an alarm: audited, and status is unhealthy (12)
    with open(setup.config, "a", encoding="utf-8") as f:
        f.write('\n[[backup.jobs.checks]]\nname = "impossible"\n'
                'sql = "SELECT 1"\nequals = 2\nseverity = "alarm"\n')
    proc = setup.run("verify", "orders", "--latest", "--identity", str(setup.identity))
    assert proc.returncode == 21, proc.stdout + proc.stderr
    [alarm] = events(state, "verify.alarm", "orders")
    assert alarm["trigger"] == "manual" and "failed_at" not in alarm and alarm["server"]
    assert "SELECT" not in json.dumps(alarm)
    status = setup.run("status", "--json")
    assert status.returncode == 12, status.stdout + status.stderr
    [job] = json.loads(status.stdout)["jobs"]
    assert job["verify"]["last"]["result"] == "alarm"
    assert job["verify"]["days"][-1]["result"] == "alarm"
    assert setup.run("audit", "verify").returncode == 0

    # deleting the newest record is detected (the MACed head names it, its backup stays)
    hist = setup.run("verify", "orders", "--history", "--json", "--identity",
                     str(setup.identity))
    assert hist.returncode == 0 and json.loads(hist.stdout)["chain"] == "ok", hist.stderr
    newest_record = tmp_path / "backups" / alarm["record"]
    newest_record.unlink()
    hist = setup.run("verify", "orders", "--history", "--json")
    assert hist.returncode == 5, hist.stdout + hist.stderr
    assert json.loads(hist.stdout)["broken_at"] == alarm["record"]
