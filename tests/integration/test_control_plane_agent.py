"""A real enrolled agent (``dbcrate agent``) and PostgreSQL behind the control plane:
a server-defined job with a sealed password backs up a scram PostgreSQL, commands are
picked up during a long-poll and run once, a restore dispatched by an operator lands in
the audit log with that user as actor, events survive a server outage, reindex, and the
canaries (no secret or backed-up data in the server's DB, logs or responses)."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography import x509

from dbcrate.agent.remote.client import Client
from dbcrate.agent.remote.files import load
from dbcrate.sandbox import table_checksums
from tests.lib.agent import Agent
from tests.lib.controlplane import (
    agent_config,
    command_done,
    enroll,
    online,
    start_agent,
    wait_for,
)
from tests.lib.e2e import DBCRATE
from tests.servers.controlplane import PASSWORD, ControlPlane, new_control_plane
from tests.servers.postgres import PgDatabase, new_db_name

log = logging.getLogger(__name__)
S3_SECRET = "CANARY-s3-secret-9f3b1c"
S3_ACCESS = "CANARYACCESSKEY7Q"


@dataclass
class Fleet:
    cp: ControlPlane
    agent: Agent
    state: Path
    config: Path
    db: PgDatabase
    restore_db: str
    admin: httpx.Client
    op: httpx.Client
    viewer: httpx.Client
    responses: list[str]
    first_cert: x509.Certificate

    def call(self, client: httpx.Client, method: str, path: str, **kw: Any) -> httpx.Response:
        r = client.request(method, path, **kw)
        self.responses.append(r.text)
        return r

    def wait_command(self, cid: str) -> dict[str, Any]:
        def done() -> dict[str, Any] | None:
            c = command_done(self.admin, cid)
            if c:
                self.responses.append(json.dumps(c))
            return c

        return dict(wait_for(f"command {cid}", done, self.agent.stderr))


@pytest.fixture(scope="module")
def fleet(control_plane: ControlPlane, pg_server: Any,
          tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    from tests.servers.postgres import sample_db

    tmp = tmp_path_factory.mktemp("fleet")
    state = tmp / "state"
    restore_db = new_db_name("cprestore")
    with sample_db(pg_server, prefix="cpsrc") as db:
        enroll(control_plane, state, "pg1")
        local_job = "\n".join([
            'name = "localjob"', 'engine = "postgres"', f"url = {json.dumps(db.url)}",
            f"password_file = {json.dumps(str(tmp / 'pg-password'))}", 'targets = ["local"]'])
        (tmp / "pg-password").write_text(db.password)
        config = agent_config(tmp, state, restore_url=pg_server.url(restore_db),
                              restore_password=db.password, local_job=local_job)
        agent = start_agent(config, state)
        admin = control_plane.api("admin@acme.test")
        try:
            wait_for("pg1 online", lambda: online(admin, "pg1"), agent.stderr)
            yield Fleet(control_plane, agent, state, config, db, restore_db, admin,
                        control_plane.api("op@acme.test"),
                        control_plane.api("viewer@acme.test"), [], _cert(state))
        finally:
            agent.stop()
            pg_server.drop_database(restore_db)


def test_definitions_refused_keys(fleet: Fleet) -> None:
    for bad, key in (({"recipients": ["age1x"]}, "recipients"),
                     ({"options": {"start_command": "sh -c id"}}, "start_command"),
                     ({"pg_bin_dir": "/tmp"}, "pg_bin_dir"),
                     ({"encryption_key": "x"}, "encryption_key")):
        r = fleet.call(fleet.admin, "PUT", "/api/v1/agents/pg1/jobs/evil",
                       json={"engine": "postgres", **bad})
        assert r.status_code == 422 and key in r.json()["detail"], r.text
    with_identity = {"engine": "postgres", "password": "AGE-SECRET-KEY-1QQQQQQQQQQQQQQ"}
    r = fleet.call(fleet.admin, "PUT", "/api/v1/agents/pg1/jobs/evil", json=with_identity)
    assert r.status_code == 422 and "age identity" in r.text
    assert not fleet.cp.rows("SELECT 1 FROM definitions WHERE name = 'evil'")


def test_invalid_definition_refused_by_the_agent_old_config_kept(fleet: Fleet) -> None:
    def agent_row() -> dict[str, Any]:
        return next(a for a in fleet.admin.get("/api/v1/agents").json() if a["name"] == "pg1")

    r = fleet.call(fleet.admin, "PUT", "/api/v1/agents/pg1/jobs/odd",
                   json={"engine": "oracle", "targets": ["local"]})
    assert r.status_code == 200
    error = wait_for("config refused", lambda: agent_row()["config_error"], fleet.agent.stderr)
    assert "engine" in error
    assert "keeping the old config" in fleet.agent.stderr()
    assert fleet.call(fleet.admin, "DELETE", "/api/v1/agents/pg1/jobs/odd").status_code == 200
    wait_for("config accepted again", lambda: agent_row()["config_error"] is None,
             fleet.agent.stderr)
    assert fleet.call(fleet.admin, "DELETE", "/api/v1/agents/pg1/jobs/odd").status_code == 404


def test_server_job_sealed_password_backup_and_restore(fleet: Fleet) -> None:
    target = {"type": "s3", "bucket": "canary", "endpoint": "http://127.0.0.1:9",
              "access_key": S3_ACCESS, "secret_key": S3_SECRET}
    r = fleet.call(fleet.admin, "PUT", "/api/v1/agents/pg1/targets/s3canary", json=target)
    assert r.status_code == 200, r.text
    assert r.json()["sealed"] == ["access_key_sealed", "secret_key_sealed"]
    job = {"engine": "postgres", "url": fleet.db.url, "password": fleet.db.password,
           "targets": ["local"]}
    r = fleet.call(fleet.admin, "PUT", "/api/v1/agents/pg1/jobs/orders", json=job)
    assert r.status_code == 200 and r.json()["sealed"] == ["password_sealed"], r.text
    (body,) = fleet.cp.rows("SELECT body FROM definitions WHERE name = 'orders'")
    stored = json.loads(body[0])
    assert "password" not in stored
    assert stored["password_sealed"].startswith("-----BEGIN AGE ENCRYPTED FILE-----")
    # the agent is in a long-poll now; the command reaches it without waiting a poll out
    wait_for("agent applied config", lambda: "control-plane config" in fleet.agent.stderr())
    queued_at = time.monotonic()
    cid = fleet.call(fleet.op, "POST", "/api/v1/agents/pg1/jobs/orders/backup") \
        .json()["command_id"]
    wait_for("command running", lambda: fleet.admin.get(f"/api/v1/commands/{cid}")
             .json()["status"] != "queued", fleet.agent.stderr)
    log.warning("backup command picked up %.2fs after it was queued",
                time.monotonic() - queued_at)
    done = fleet.wait_command(cid)
    assert done["status"] == "ok", (done, fleet.agent.stderr())
    backups = fleet.call(fleet.viewer, "GET", "/api/v1/backups?agent=pg1&job=orders").json()
    assert len(backups) == 1 and backups[0]["agent"] == "pg1"
    assert backups[0]["encrypted"] and backups[0]["target"] == "local"
    bid = backups[0]["id"]
    # delivered again (as after a lost acknowledgement): acknowledged, never run twice
    fleet.cp.rows("UPDATE commands SET status = 'queued' WHERE id = ?", (cid,))
    assert fleet.admin.get(f"/api/v1/commands/{cid}").json()["status"] == "queued"
    assert fleet.wait_command(cid)["status"] == "ok"
    runs = [r for r in _agent_runs(fleet.state) if r == "orders"]
    assert len(runs) == 1

    # a viewer cannot restore (403, nothing queued); an operator can
    before = fleet.cp.rows("SELECT COUNT(*) FROM commands")[0][0]
    body_restore = {"agent": "pg1", "to": "scratch", "clean": False}
    r = fleet.call(fleet.viewer, "POST", f"/api/v1/backups/{bid}/restore", json=body_restore)
    assert r.status_code == 403
    assert fleet.cp.rows("SELECT COUNT(*) FROM commands")[0][0] == before
    r = fleet.call(fleet.op, "POST", f"/api/v1/backups/{bid}/restore",
                   json={**body_restore, "to": "prod"})
    assert r.status_code == 422 and "to:" in r.json()["detail"]
    # an agent without [agent] identity_file cannot be sent a restore
    enroll(fleet.cp, fleet.state.parent / "backuponly", "backuponly")
    c = Client(load(fleet.state.parent / "backuponly"))
    c.call("POST", "/heartbeat", json={"jobs": [], "can_restore": False,
                                       "connections": ["scratch"]})
    c.close()
    r = fleet.call(fleet.op, "POST", f"/api/v1/backups/{bid}/restore",
                   json={**body_restore, "agent": "backuponly"})
    assert r.status_code == 422 and "cannot restore" in r.json()["detail"]
    assert fleet.cp.rows("SELECT COUNT(*) FROM commands")[0][0] == before
    cid = fleet.call(fleet.op, "POST", f"/api/v1/backups/{bid}/restore",
                     json=body_restore).json()["command_id"]
    done = fleet.wait_command(cid)
    assert done["status"] == "ok", (done, fleet.agent.stderr())
    restored = table_checksums(fleet.db.server.url(fleet.restore_db), password=fleet.db.password)
    assert restored == fleet.db.checksums()
    audit = wait_for("restore.ok audited", lambda: fleet.call(
        fleet.viewer, "GET", "/api/v1/audit?event=restore.ok").json())
    assert audit[-1]["actor"] == "op@acme.test" and audit[-1]["backup_id"] == bid
    assert audit[-1]["agent"] == "pg1" and audit[-1]["job"] == "orders"
    oks = fleet.call(fleet.viewer, "GET", "/api/v1/audit?event=backup.ok&job=orders").json()
    assert [a["actor"] for a in oks] == ["op@acme.test"]
    # agent records are kept with their signature
    sigs = fleet.cp.rows("SELECT signature FROM audit WHERE event = 'restore.ok'")
    assert sigs and all(s for (s,) in sigs)


CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


def test_browser_restore_flow(fleet: Fleet) -> None:
    """login -> databases -> backups -> Restore... -> live status ok -> audit restore.ok by
    that user; a viewer sees no restore button; a change without the CSRF token is 403."""
    from playwright.sync_api import sync_playwright

    base = fleet.cp.url
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        try:
            ctx = browser.new_context()
            page = ctx.new_page()
            page.goto(f"{base}/databases")
            assert page.url.endswith("/login")
            page.fill("input[name=email]", "op@acme.test")
            page.fill("input[name=password]", PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base}/databases")
            page.click("a:text-is('orders')")
            page.wait_for_url("**/backups?agent=pg1&job=orders")
            page.click("text=Restore…")
            page.select_option("select[name=to]", "scratch")
            page.check("input[name=clean]")
            page.click("button:text-is('Restore')")
            page.wait_for_selector("#status .status.ok", timeout=120_000)
            page.click("nav >> text=Audit")
            row = page.locator("tr.audit-row", has=page.locator("td.event",
                                                                 has_text="restore.ok")).first
            assert row.locator("td.actor").inner_text() == "op@acme.test"
            # no CSRF token: 403 and nothing queued
            bid = fleet.admin.get("/api/v1/backups?job=orders").json()[0]["id"]
            before = fleet.cp.rows("SELECT COUNT(*) FROM commands")[0][0]
            r = ctx.request.post(f"{base}/restore/{bid}",
                                 form={"agent": "pg1", "to": "scratch", "clean": "1"})
            assert r.status == 403
            token = page.locator("input[name=csrf_token]").first.get_attribute("value")
            r = ctx.request.post(f"{base}/restore/{bid}", form={
                "agent": "pg1", "to": "prod", "csrf_token": token or ""})
            assert r.status == 422 and "scratch" in r.text()  # names the allowed ones
            assert fleet.cp.rows("SELECT COUNT(*) FROM commands")[0][0] == before
            ctx.close()
            # a viewer sees the backups but no Restore... button
            viewer = browser.new_context().new_page()
            viewer.goto(f"{base}/login")
            viewer.fill("input[name=email]", "viewer@acme.test")
            viewer.fill("input[name=password]", PASSWORD)
            viewer.click("button[type=submit]")
            viewer.wait_for_url(f"{base}/databases")
            viewer.goto(f"{base}/backups?job=orders")
            assert viewer.locator("tr[data-backup]").count() >= 1
            assert viewer.locator("text=Restore…").count() == 0
        finally:
            browser.close()
    restored = table_checksums(fleet.db.server.url(fleet.restore_db), password=fleet.db.password)
    assert restored == fleet.db.checksums()


def _agent_runs(state: Path) -> list[str]:
    from tests.lib.agent import runs

    return [r["job"] for r in runs(state) if r["trigger"] == "command"]


def test_failing_backup_error_reaches_server_without_secret(fleet: Fleet) -> None:
    job = {"engine": "postgres", "url": fleet.db.url, "password": "CANARY-wrong-pw-51e2",
           "targets": ["local"]}
    assert fleet.call(fleet.admin, "PUT", "/api/v1/agents/pg1/jobs/broken",
                      json=job).status_code == 200
    cid = fleet.call(fleet.op, "POST", "/api/v1/agents/pg1/jobs/broken/backup") \
        .json()["command_id"]
    done = fleet.wait_command(cid)
    assert done["status"] == "failed" and done["error"], done
    assert "CANARY" not in json.dumps(done)


def test_events_survive_a_server_outage_and_reindex(fleet: Fleet) -> None:
    fleet.cp.stop()
    try:
        assert fleet.agent.proc.poll() is None
        p = subprocess.run([DBCRATE, "--config", str(fleet.config), "backup", "localjob"],
                           capture_output=True, text=True, timeout=300)
        assert p.returncode == 0, p.stderr
    finally:
        fleet.cp.start()
    admin = fleet.cp.api("admin@acme.test")
    got = wait_for("localjob backup.ok after the outage", lambda: admin.get(
        "/api/v1/audit?event=backup.ok&job=localjob").json(), fleet.agent.stderr)
    assert got[0]["agent"] == "pg1"
    # reindex: the server's index equals what the agent's targets hold
    before = {b["id"] for b in admin.get("/api/v1/backups?agent=pg1").json()}
    cid = admin.post("/api/v1/agents/pg1/reindex").json()["command_id"]
    fleet.admin = admin
    assert fleet.wait_command(cid)["status"] == "ok"
    after = {b["id"] for b in admin.get("/api/v1/backups?agent=pg1").json()}
    assert before < after  # the CLI backup made during the outage is indexed now


def test_canaries_nowhere_on_the_server(fleet: Fleet) -> None:
    ident = (fleet.state / "remote" / "identity.txt").read_text().split()[-1]
    local_ident = (fleet.config.parent / "identity.txt").read_text().strip()
    canaries = [fleet.db.password, S3_SECRET, S3_ACCESS, "CANARY-wrong-pw-51e2", ident,
                local_ident]
    rows = fleet.db.server.psql("SELECT body FROM texts WHERE length(body) >= 12",
                                db=fleet.db.name)
    data = [str(r[0]) for r in rows]
    assert data
    blobs = {p.name: p.read_bytes() for p in fleet.cp.dir.iterdir()
             if p.name.startswith("server.db")}
    blobs["logs"] = fleet.cp.log_text().encode()
    blobs["responses"] = "\n".join(fleet.responses).encode()
    assert "server.db-wal" in blobs or "server.db" in blobs
    for name, blob in blobs.items():
        for c in [*canaries, *data]:
            assert c.encode() not in blob, f"{c[:12]}... found in {name}"


def _cert(state: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate((state / "remote" / "agent.crt").read_bytes())


def test_certificate_renewed_at_two_thirds(fleet: Fleet) -> None:
    """agent_cert_ttl = 60s: the running agent renews by itself, for the same key."""
    first = fleet.first_cert
    new = wait_for("automatic renewal", lambda: (c := _cert(fleet.state)).serial_number
                   != first.serial_number and c, fleet.agent.stderr)
    assert new.public_key() == first.public_key()
    life = first.not_valid_after_utc - first.not_valid_before_utc
    log.warning("renewed %.0f%% into the first certificate's life",
                100 * (new.not_valid_before_utc - first.not_valid_before_utc) / life)
    assert fleet.cp.rows("SELECT cert_serial FROM agents WHERE name = 'pg1' AND "
                         "revoked_at IS NULL") == [(format(new.serial_number, "x"),)]
    assert "certificate renewed" in fleet.agent.stderr()
    before = fleet.admin.get("/api/v1/agents").json()
    wait_for("a heartbeat with the new certificate", lambda: [
        a for a in fleet.admin.get("/api/v1/agents").json()
        if a["name"] == "pg1" and a["last_seen"] != next(
            b["last_seen"] for b in before if b["name"] == "pg1")])


def test_server_db_lost_reenrol_and_reindex(fleet: Fleet, tmp_path: Path) -> None:
    """The server's DB is an index, never the only copy: a new control plane, the agent
    enrolled again, one reindex, and the same backups are listed."""
    before = _index(fleet.admin)
    assert before
    fleet.agent.stop()
    fleet.cp.stop()
    new = new_control_plane(tmp_path)
    new.start()
    agent = None
    try:
        shutil.rmtree(fleet.state / "remote")
        enroll(new, fleet.state, "pg1")
        agent = start_agent(fleet.config, fleet.state)
        admin = new.api("admin@acme.test")
        wait_for("pg1 online on the new server", lambda: online(admin, "pg1"), agent.stderr)
        assert admin.get("/api/v1/backups").json() == []
        cid = admin.post("/api/v1/agents/pg1/reindex").json()["command_id"]
        assert wait_for("reindex", lambda: command_done(admin, cid), agent.stderr)["status"] \
            == "ok"
        assert _index(admin) == before
    finally:
        if agent is not None:
            agent.stop()
        new.stop()
        fleet.cp.start()


def _index(api: httpx.Client) -> list[tuple[str, str, str]]:
    return sorted((b["id"], b["job"], b["target"]) for b in api.get("/api/v1/backups").json())
