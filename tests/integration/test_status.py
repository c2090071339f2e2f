"""``dbcrate status`` from the config and the state DB (real PostgreSQL, real CLI):
manual runs, a failure, max_age, exit 12; and the shipped systemd units."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from tests.lib.agent import agent_table, events, wait_until
from tests.lib.e2e import DBCRATE, local_target, make_setup
from tests.servers.postgres import PgDatabase

UNITS = Path(__file__).resolve().parents[2] / "contrib" / "systemd"


def test_status_shows_manual_runs_failures_and_max_age(pg_db: PgDatabase, tmp_path: Path) -> None:
    state = tmp_path / "state"
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password, encryption="none",
                       targets=[local_target(tmp_path / "backups")],
                       job_extra={"schedule": "0 3 * * *", "timezone": "Europe/Berlin",
                                  "max_age": "1s"})
    setup.config.write_text(setup.config.read_text() + "\n" + agent_table(state))

    before = setup.run("status", "--json")
    assert before.returncode == 12  # max_age set and no success yet: exceeded
    [job] = json.loads(before.stdout)["jobs"]
    assert job["last_run"] is None and job["last_success"] is None
    assert job["max_age_exceeded"] is True
    assert json.loads(before.stdout)["agent"] == {"running": False, "pid": None}

    setup.run("backup", check=True)
    listed = setup.list_json("orders")
    done = datetime.now(UTC)
    [job] = json.loads(setup.run("status", "--json").stdout)["jobs"]
    assert job["last_run"]["trigger"] == "manual"
    assert job["last_run"]["result"] == "ok"
    assert job["last_success"]["backup_id"] == listed[0]["id"]
    assert job["last_success"]["size"] == listed[0]["size"]
    assert job["timezone"] == "Europe/Berlin"
    nxt = datetime.fromisoformat(job["next_run"])
    assert nxt.astimezone(ZoneInfo("Europe/Berlin")).hour == 3
    assert [e["backup_id"] for e in events(state, "backup.ok", "orders")] == [listed[0]["id"]]

    # max_age = 1s: once a second has passed, the success is too old (waiting on the clock)
    wait_until("max_age to pass", lambda: datetime.now(UTC) > done + timedelta(seconds=2))
    aged = setup.run("status", "--json")
    assert aged.returncode == 12
    assert json.loads(aged.stdout)["jobs"][0]["max_age_exceeded"] is True

    text = setup.config.read_text().replace('max_age = "1s"\n', "")
    setup.config.write_text(text)
    assert setup.run("status").returncode == 0
    pwfile = tmp_path / "pg-password"
    pwfile.write_text("wrong-password")
    assert setup.run("backup").returncode != 0
    failed = setup.run("status", "--json")
    assert failed.returncode == 12  # the last run failed
    [job] = json.loads(failed.stdout)["jobs"]
    assert job["last_run"]["result"] == "failed"
    assert job["last_run"]["error"]
    assert job["last_success"]["backup_id"] == listed[0]["id"]
    assert "wrong-password" not in failed.stdout
    human = setup.run("status")
    assert "last run: failed (manual)" in human.stdout
    assert setup.run("audit", "verify").returncode == 0


@pytest.mark.parametrize("unit", ["dbcrate-agent.service", "user/dbcrate-agent.service"])
def test_systemd_units_verify(unit: str, tmp_path: Path) -> None:
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here")
    path = UNITS / unit
    text = path.read_text()
    assert "ExecReload=/bin/kill -HUP $MAINPID" in text
    # verify needs the ExecStart binary to exist: point it at this venv's dbcrate
    copy = tmp_path / "dbcrate-agent.service"
    copy.write_text(text.replace("/usr/local/bin/dbcrate", DBCRATE))
    args = [analyze, *(["--user"] if unit.startswith("user/") else []), "verify", str(copy)]
    runtime = tmp_path / "run"  # a --user manager needs a runtime dir, even for verify
    runtime.mkdir(mode=0o700)
    env = {**os.environ, "XDG_RUNTIME_DIR": os.environ.get("XDG_RUNTIME_DIR", str(runtime))}
    proc = subprocess.run(args, capture_output=True, text=True, check=False, timeout=120,
                          env=env)
    if "Failed to initialize manager" in proc.stderr:
        pytest.skip(f"systemd-analyze cannot run here: {proc.stderr.strip()[:200]}")
    assert proc.stdout == "" and proc.stderr == "", proc.stdout + proc.stderr
