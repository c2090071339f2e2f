"""Notifications from the real agent to a real HTTP receiver (http.server thread), a real
SMTP server (aiosmtpd) and a dead receiver; a canary password appears in none of the
agent's outputs (logs, audit log, state DB, metrics, notification bodies)."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from dbcrate import notify
from dbcrate.config.agent import NotifyConfig
from dbcrate.sandbox.postgres import free_port
from tests.lib.agent import Agent, agent_table, events, runs, wait_until
from tests.lib.e2e import DBCRATE, local_target, make_setup
from tests.servers.notify import Receiver
from tests.servers.postgres import PgDatabase

CANARY = "Canary-Pw-7f3a9e"  # the database password (wrong on purpose)
URL_CANARY = "Url-Canary-51c0"  # a secret inside a notification URL


@dataclass
class Mailbox:
    port: int
    messages: list[str] = field(default_factory=list)


@pytest.fixture
def smtp_server() -> Iterator[Mailbox]:
    box = Mailbox(free_port())

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            box.messages.append(envelope.content.decode("utf-8", "replace"))
            return "250 OK"

    controller = Controller(Handler(), hostname="127.0.0.1", port=box.port)
    controller.start()
    try:
        yield box
    finally:
        controller.stop()


def mailto(port: int) -> str:
    return (f"mailto://127.0.0.1:{port}?from=dbcrate@example.com&to=ops@example.com"
            "&mode=insecure")


def test_agent_notifies_http_smtp_and_survives_a_dead_receiver(
    pg_db: PgDatabase, tmp_path: Path, http_receiver: Receiver, smtp_server: Mailbox
) -> None:
    state = tmp_path / "state"
    setup = make_setup(tmp_path, url=pg_db.url, password=CANARY, encryption="none",
                       targets=[local_target(tmp_path / "backups")],
                       job_extra={"schedule": "*/2 * * * * *", "max_age": "1h"})
    dead = free_port()
    url_file = tmp_path / "hook-url"
    url_file.write_text(f"json://hook:{URL_CANARY}@127.0.0.1:{http_receiver.port}/hook\n")
    url_file.chmod(0o600)
    setup.config.write_text(setup.config.read_text() + "\n" + agent_table(
        state, metrics_file=str(tmp_path / "m.prom"), log_format="json") + f"""
[[notify]]
url_file = "{url_file}"
on = ["failure", "max_age"]

[[notify]]
url = "{mailto(smtp_server.port)}"
jobs = ["orders"]

[[notify]]
url = "json://127.0.0.1:{dead}/nobody?pw={URL_CANARY}"
""")
    agent = Agent(setup.config, state).started()
    try:
        wait_until("two failed runs", lambda: sum(r["result"] == "failed"
                                                  for r in runs(state)) >= 2, agent)
        wait_until("notifications", lambda: len(http_receiver.posts) >= 3
                   and len(smtp_server.messages) >= 3
                   and len(events(state, "notify.fail")) >= 2, agent)
    finally:
        assert agent.stop() == 0

    failures = [p for p in http_receiver.posts if p["type"] == "failure"]
    assert failures[0]["title"] == "dbcrate: orders backup failed"
    assert "password authentication failed" in failures[0]["message"] or \
        "authentication" in failures[0]["message"]
    assert "hint:" in failures[0]["message"]
    overdue = [p for p in http_receiver.posts if p["type"] == "warning"]
    assert len(overdue) == 1  # max_age: once per breach, not once per loop
    assert overdue[0]["title"] == "dbcrate: orders backup older than 1h"
    assert all(p["path"] == "/hook" for p in http_receiver.posts)
    assert any("Subject: dbcrate: orders backup failed" in m for m in smtp_server.messages)

    fails = events(state, "notify.fail")
    assert {f["target"] for f in fails} == {"notify[2] (json)"}
    assert all(r["result"] == "failed" for r in runs(state))  # never crashed a run

    outputs = {
        "stderr": agent.stderr(),
        "audit": (state / "audit.jsonl").read_text(),
        "state": (state / "state.sqlite3").read_bytes().decode("latin-1"),
        "metrics": (tmp_path / "m.prom").read_text(),
        "http": json.dumps(http_receiver.posts),
        "smtp": "\n".join(smtp_server.messages),
        "status": setup.run("status", "--json").stdout,
        "audit list": setup.run("audit", "list").stdout,
    }
    for name, text in outputs.items():
        assert CANARY not in text, name
        assert URL_CANARY not in text, name
    for line in outputs["stderr"].splitlines():
        assert {"ts", "level", "msg"} <= set(json.loads(line))


def test_send_success_and_bad_urls(http_receiver: Receiver) -> None:
    hook = NotifyConfig(url=f"json://127.0.0.1:{http_receiver.port}/ok", on=("success",))
    other = NotifyConfig(url=f"json://127.0.0.1:{http_receiver.port}/other", jobs=("x",))
    assert notify.send([hook, other], notify.success("orders", "ID1", 42, ["local"])) == []
    [post] = http_receiver.posts
    assert post["title"] == "dbcrate: orders backup ok"
    assert post["type"] == "success"
    assert "ID1" in post["message"]
    # a failure notification only goes to entries that want it (none here)
    assert notify.send([hook], notify.failure("orders", "boom", None)) == []
    assert len(http_receiver.posts) == 1


def test_a_bad_notify_url_is_a_config_error_that_hides_the_url(tmp_path: Path) -> None:
    cfg = tmp_path / "c.toml"
    cfg.write_text(f"""
[backup]
encrypt = false
[backup.targets.local]
path = "{tmp_path}"
[[backup.jobs]]
name = "orders"
url = "postgresql://localhost/x"
[[notify]]
url = "nosuchscheme://user:{URL_CANARY}@host"
""")
    proc = subprocess.run([DBCRATE, "--config", str(cfg), "agent", "--check"],
                          capture_output=True, text=True, check=False, timeout=60)
    assert proc.returncode == 2
    assert f"{cfg}: notify[0].url: not a notification URL apprise can use" in proc.stderr
    assert URL_CANARY not in proc.stderr
