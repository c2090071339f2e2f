"""The control plane without a database: init, enrollment, mTLS refusals (curl, httpx),
renewal, roles per endpoint, orgs, the append-only audit log (SQLite, PostgreSQL)."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric import ec

from dbcrate.agent.remote.client import Client
from dbcrate.agent.remote.files import load
from dbcrate.server import admin as server_admin
from dbcrate.server import audit as server_audit
from dbcrate.server.db import migrate, open_engine, sessions
from dbcrate.server.models import Org
from tests.lib.controlplane import enroll, wait_for
from tests.lib.e2e import DBCRATE
from tests.servers.controlplane import PASSWORD, ControlPlane, new_control_plane, run_cli


def test_init_files_and_first_admin_link(control_plane: ControlPlane, ghost: str) -> None:
    assert "first admin (one use, 24h): http://127.0.0.1:" in control_plane.first_output
    assert (control_plane.dir / "ca" / "ca.key").stat().st_mode & 0o777 == 0o600
    assert (control_plane.dir / "server.db").stat().st_mode & 0o077 == 0
    rows = control_plane.rows("SELECT password_hash FROM users")
    assert rows and all(h.startswith("$argon2id$") for (h,) in rows)
    # tokens are stored hashed: the printed token is nowhere in the DB
    token = control_plane.token("nobody")
    secret = token.split(".")[1]
    assert not control_plane.rows("SELECT 1 FROM tokens WHERE hash = ?", (secret,))
    out = json.loads(run_cli("server", "enroll-token", "--data-dir", str(control_plane.dir),
                             "--json", "--ttl", "5m").stdout)
    assert set(out) == {"token", "expires_at", "command"}
    assert out["command"].startswith(f"dbcrate agent enroll --server {control_plane.url} ")


ENDPOINTS = [  # (method, path, body, lowest role)
    ("GET", "/api/v1/agents", None, "viewer"),
    ("GET", "/api/v1/backups", None, "viewer"),
    ("GET", "/api/v1/audit", None, "viewer"),
    ("POST", "/api/v1/agents/roles1/jobs/j/backup", None, "operator"),
    ("POST", "/api/v1/backups/nope/restore", {"agent": "roles1", "to": "x"}, "operator"),
    ("PUT", "/api/v1/agents/roles1/jobs/j", {"engine": "postgres"}, "admin"),
    ("PUT", "/api/v1/agents/roles1/targets/t", {"type": "local", "path": "/x"}, "admin"),
    ("DELETE", "/api/v1/agents/roles1/jobs/j", None, "admin"),
    ("POST", "/api/v1/agents/roles1/reindex", None, "admin"),
    ("POST", "/api/v1/agents/roles1/revoke", None, "admin"),
]
RANK = {"viewer": 0, "operator": 1, "admin": 2}
WHO = {"viewer": "viewer@acme.test", "operator": "op@acme.test", "admin": "admin@acme.test"}


def test_endpoint_by_role(control_plane: ControlPlane, tmp_path: Path) -> None:
    enroll(control_plane, tmp_path / "s", "roles1")
    queued = control_plane.rows("SELECT COUNT(*) FROM commands")
    anon = httpx.Client(base_url=control_plane.url, timeout=30)
    clients = {role: control_plane.api(email) for role, email in WHO.items()}
    for method, path, body, need in sorted(ENDPOINTS, key=lambda e: e[0] == "POST"
                                           and e[1].endswith("revoke")):
        assert anon.request(method, path, json=body).status_code == 401, path
        for role, client in clients.items():
            r = client.request(method, path, json=body)
            if RANK[role] < RANK[need]:
                assert r.status_code == 403, (role, path, r.text)
            else:
                assert r.status_code in (200, 404, 422), (role, path, r.text)
    # a viewer dispatching queued nothing; the operator's backup of job j did
    cmds = control_plane.rows("SELECT actor FROM commands")
    assert len(cmds) - queued[0][0] == 3  # operator + admin backups, admin reindex
    assert all(a != "viewer@acme.test" for (a,) in cmds)
    # no CSRF token on a change: 403, nothing queued
    op = control_plane.api("op@acme.test")
    del op.headers["X-CSRF-Token"]
    assert op.post("/api/v1/agents/roles1/jobs/j/backup").status_code == 403
    assert len(control_plane.rows("SELECT actor FROM commands")) == len(cmds)


def test_other_org_is_404(control_plane: ControlPlane, tmp_path: Path) -> None:
    enroll(control_plane, tmp_path / "s", "acme-only")
    other = control_plane.api("admin@other.test")
    assert other.post("/api/v1/agents/acme-only/jobs/j/backup").status_code == 404
    assert other.post("/api/v1/agents/acme-only/revoke").status_code == 404
    assert other.put("/api/v1/agents/acme-only/jobs/j", json={}).status_code == 404
    assert all(a["name"] != "acme-only" for a in other.get("/api/v1/agents").json())
    assert other.get("/api/v1/audit").json() == []
    acme_cmd = control_plane.api("op@acme.test").post(
        "/api/v1/agents/acme-only/jobs/j/backup").json()["command_id"]
    assert other.get(f"/api/v1/commands/{acme_cmd}").status_code == 404


def test_sqlite_audit_append_only_and_verify(tmp_path: Path) -> None:
    data = tmp_path / "data"
    server_admin.init(data, {"org": "acme"})
    eng = open_engine(f"sqlite:///{data / 'server.db'}")
    with sessions(eng)() as db:
        org = db.scalar(sa.select(Org.id).where(Org.name == "acme"))
        assert org is not None
        for i in range(3):
            server_audit.append(db, org, "backup.ok", "schedule", agent="a", job=f"j{i}")
        assert server_audit.verify(db, org).records == 3
    eng.dispose()
    conn = sqlite3.connect(data / "server.db")
    for sql in ("UPDATE audit SET actor = 'x' WHERE seq = 2", "DELETE FROM audit WHERE seq = 2"):
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
    # someone with the file drops the trigger and edits a row: verify names it
    conn.execute("DROP TRIGGER audit_no_update")
    conn.execute("UPDATE audit SET job = 'other' WHERE seq = 2")
    conn.commit()
    conn.close()
    bad = run_cli("server", "audit", "verify", "--data-dir", str(data), check=False)
    assert bad.returncode == 5, bad.stderr
    assert "seq 2" in bad.stderr


def test_postgres_audit_append_only(pg_server: object) -> None:
    from dbcrate.sandbox import TempPostgres

    assert isinstance(pg_server, TempPostgres)
    pg_server.drop_database("dbcrate_cp_audit")
    pg_server.create_database("dbcrate_cp_audit")
    url = (f"postgresql+psycopg://{pg_server.user}:{pg_server.password}@{pg_server.host}:"
           f"{pg_server.port}/dbcrate_cp_audit")
    eng = open_engine(url)
    try:
        migrate(eng)
        with sessions(eng)() as db:
            db.add(Org(name="acme"))
            db.commit()
            org = db.scalar(sa.select(Org.id))
            assert org is not None
            server_audit.append(db, org, "restore.ok", "op@acme.test", job="orders")
            server_audit.append(db, org, "backup.ok", "schedule", job="orders")
            assert server_audit.verify(db, org).records == 2
        for sql in ("UPDATE audit SET actor = 'x'", "DELETE FROM audit", "TRUNCATE audit"):
            with pytest.raises(sa.exc.DBAPIError, match="append-only"), eng.begin() as c:
                c.execute(sa.text(sql))
    finally:
        eng.dispose()
        pg_server.drop_database("dbcrate_cp_audit")


def test_first_admin_link_works_once(control_plane: ControlPlane) -> None:
    link = next(line for line in control_plane.first_output.splitlines()
                if line.startswith("first admin"))
    token = link.rsplit("#", 1)[1]
    web = httpx.Client(base_url=control_plane.url, timeout=30)
    assert "Create the first admin" in web.get("/setup").text
    form = {"token": token, "email": "first@acme.test", "password": "first-admin-pw"}
    assert web.post("/setup", data=form).status_code == 303
    assert web.post("/setup", data={**form, "email": "second@acme.test"}).status_code == 403
    r = web.post("/api/v1/session", json={"email": "first@acme.test",
                                          "password": "first-admin-pw"})
    assert r.status_code == 200 and r.json()["role"] == "admin" and r.json()["org"] == "acme"
    assert web.post("/api/v1/session", json={"email": "first@acme.test",
                                             "password": "wrong"}).status_code == 401


@pytest.fixture(scope="module")
def ghost(control_plane: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> str:
    """An agent that sent one heartbeat and then went silent (set up by the module's first
    test, so the wait for ``offline_after`` overlaps the other tests)."""
    state = tmp_path_factory.mktemp("ghost")
    enroll(control_plane, state, "ghost")
    client = Client(load(state))
    every_2s = {"name": "nightly", "engine": "postgres", "schedule": "*/2 * * * * *",
                "timezone": "UTC"}
    client.call("POST", "/heartbeat", json={"version": "test", "jobs": [every_2s],
                                            "results": {}, "can_restore": False})
    client.close()
    admin = control_plane.api("admin@acme.test")
    assert any(a["name"] == "ghost" and a["online"] for a in admin.get("/api/v1/agents").json())
    return "ghost"


def test_silent_agent_is_audited_offline(control_plane: ControlPlane, ghost: str) -> None:
    admin = control_plane.api("admin@acme.test")
    rows = wait_for("agent.offline", lambda: [r for r in admin.get(
        "/api/v1/audit?event=agent.offline").json() if r["agent"] == "ghost"])
    assert len(rows) == 1 and rows[0]["actor"] == "server"
    assert not any(a["name"] == "ghost" and a["online"]
                   for a in admin.get("/api/v1/agents").json())
    # its job's cron slots passed with no run reported: backup.missed, shown as missed
    missed = wait_for("backup.missed", lambda: [r for r in admin.get(
        "/api/v1/audit?event=backup.missed&job=nightly").json() if r["agent"] == "ghost"])
    assert missed[0]["actor"] == "server"
    web = httpx.Client(base_url=control_plane.url, timeout=30)
    web.post("/login", data={"email": "viewer@acme.test", "password": PASSWORD})
    page = web.get("/databases").text
    assert "nightly" in page and "offline" in page
    # and someone is told (notify_url_file: apprise URLs)
    wanted = {"dbcrate: agent ghost is offline", "dbcrate: nightly missed a backup"}
    wait_for("both notifications", lambda: wanted <= {
        m.get("title") for m in control_plane.notified()})


def test_login_throttled(control_plane: ControlPlane) -> None:
    web = httpx.Client(base_url=control_plane.url, timeout=30)
    wrong = {"email": "throttle@acme.test", "password": "not-it"}
    codes = [web.post("/api/v1/session", json=wrong).status_code for _ in range(6)]
    assert codes == [401] * 5 + [429]
    assert "too many" in web.post("/login", data=wrong).text


def test_postgres_metadata_db_dump_holds_no_secret(pg_server: object, tmp_path: Path) -> None:
    """The same server on a PostgreSQL metadata DB: passwords, sealed definitions, tokens
    and sessions leave no secret in a pg_dump of it."""
    from dbcrate.sandbox import TempPostgres

    assert isinstance(pg_server, TempPostgres)
    name = "dbcrate_cp_meta"
    pg_server.drop_database(name)
    pg_server.create_database(name)
    url = (f"postgresql://{pg_server.user}:{pg_server.password}@{pg_server.host}:"
           f"{pg_server.port}/{name}")
    cp = new_control_plane(tmp_path, database=url)
    cp.start()
    try:
        token = cp.token("pgmeta")
        enroll(cp, tmp_path / "s", "pgmeta", token=token)
        admin = cp.api("admin@acme.test")
        secrets = ["CANARY-pg-pw-77", "CANARY-s3-secret-77", "CANARYACCESS77"]
        assert admin.put("/api/v1/agents/pgmeta/jobs/j", json={
            "engine": "postgres", "url": "postgresql://u@h/db", "password": secrets[0],
            "targets": ["t"]}).status_code == 200
        assert admin.put("/api/v1/agents/pgmeta/targets/t", json={
            "type": "s3", "bucket": "b", "secret_key": secrets[1],
            "access_key": secrets[2]}).status_code == 200
        client = Client(load(tmp_path / "s"))
        assert client.call("GET", "/config")["jobs"]["j"]["password_sealed"]
        client.close()
        sid = admin.cookies["dbcrate_session"]
        dump = subprocess.run([str(pg_server.bin_dir / "pg_dump"), "-d", url],
                              capture_output=True, timeout=120, check=True).stdout
        assert b"password_sealed" in dump and b"$argon2id$" in dump
        identity = (tmp_path / "s" / "remote" / "identity.txt").read_text().split()[-1]
        for secret in [*secrets, token.split(".")[1], sid, PASSWORD, identity]:
            assert secret.encode() not in dump, secret[:10]
        assert (cp.dir / "server.db").exists() is False
    finally:
        cp.stop()
        pg_server.drop_database(name)


def test_run_on_an_empty_data_dir(tmp_path: Path) -> None:
    """`pip install 'dbcrate[server]'`, `dbcrate server run`: $DBCRATE_SERVER_DIR is
    initialised (SQLite, loopback defaults) and a one-time first-admin link printed."""
    import socket
    import time

    for port in (8420, 8421):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                pytest.skip(f"127.0.0.1:{port} (the default) is in use on this machine")
    data = tmp_path / "fresh"
    log = tmp_path / "run.log"
    env = {**os.environ, "DBCRATE_SERVER_DIR": str(data)}
    with open(log, "wb") as out:
        proc = subprocess.Popen([DBCRATE, "server", "run"], stdout=out, stderr=subprocess.STDOUT,
                                env=env)
    try:
        deadline = time.monotonic() + 60
        while "dashboard and API on" not in log.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text()
            time.sleep(0.1)
        text = log.read_text()
        assert "first admin (one use, 24h): http://127.0.0.1:8420/setup#" in text, text
        assert (data / "server.db").exists() and (data / "ca" / "ca.key").exists()
        r = httpx.get("http://127.0.0.1:8420/login", timeout=10)
        assert r.status_code == 200 and "Sign in" in r.text
    finally:
        proc.terminate()
        assert proc.wait(timeout=30) == 0


def test_long_poll_returns_when_a_command_is_queued(control_plane: ControlPlane,
                                                    tmp_path: Path) -> None:
    """A 20 s long-poll returns the command queued while it waits (the delay is logged,
    not asserted)."""
    import logging
    import threading
    import time

    enroll(control_plane, tmp_path / "s", "poller")
    client = Client(load(tmp_path / "s"))
    got: dict[str, Any] = {}

    def poll() -> None:
        got["body"] = client.call("GET", "/commands", params={"wait": 20})
        got["at"] = time.monotonic()

    t = threading.Thread(target=poll)
    t.start()
    admin = control_plane.api("admin@acme.test")
    wait_for("the poll to arrive", lambda: any(
        a["name"] == "poller" and a["last_seen"] for a in admin.get("/api/v1/agents").json()))
    queued = time.monotonic()
    cid = control_plane.api("op@acme.test").post(
        "/api/v1/agents/poller/jobs/j/backup").json()["command_id"]
    t.join(30)
    client.close()
    assert [c["id"] for c in got["body"]["commands"]] == [cid]
    logging.getLogger(__name__).warning("long-poll returned %.2fs after the command was "
                                        "queued", got["at"] - queued)


def test_dashboard_enrollment_and_users_pages(control_plane: ControlPlane,
                                              tmp_path: Path) -> None:
    import re

    def signed_in(email: str) -> tuple[httpx.Client, str]:
        web = httpx.Client(base_url=control_plane.url, timeout=30)
        r = web.post("/login", data={"email": email, "password": PASSWORD})
        assert r.status_code == 303
        page = web.get("/databases").text
        m = re.search(r'name="csrf_token" value="([^"]+)"', page)
        assert m
        return web, m.group(1)

    web, csrf = signed_in("admin@acme.test")
    assert web.post("/enroll", data={"name": "webbie", "ttl": "15m"}).status_code == 403
    page = web.post("/enroll", data={"name": "webbie", "ttl": "15m", "csrf_token": csrf}).text
    m = re.search(r"dbcrate agent enroll --server (\S+) --token (dbc1\.[\w.-]+) --name webbie",
                  page)
    assert m and m.group(1) == control_plane.url
    assert "dbc1." not in web.get("/enroll").text  # shown once
    enroll(control_plane, tmp_path / "s", "webbie", token=m.group(2))
    assert web.post("/users", data={"email": "new@acme.test", "role": "viewer",
                                    "password": "viewer-pw-1", "csrf_token": csrf}
                    ).status_code == 303
    assert "new@acme.test" in web.get("/users").text
    viewer, _ = signed_in("viewer@acme.test")
    assert viewer.get("/enroll").status_code == 403
    assert viewer.get("/users").status_code == 403
    assert "Enrollment" not in viewer.get("/databases").text
    events = [r["event"] for r in control_plane.api("admin@acme.test").get(
        "/api/v1/audit").json()]
    assert "token.create" in events and "user.create" in events and "agent.enroll" in events


def test_signed_events_checked_and_kept_once(control_plane: ControlPlane,
                                             tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    from dbcrate import wire

    enroll(control_plane, tmp_path / "s", "signer")
    e = load(tmp_path / "s")
    key = serialization.load_pem_private_key(e.key_path.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    rec: dict[str, Any] = {"seq": 1, "ts": "2026-01-01T00:00:00.000Z", "event": "backup.ok",
                           "job": "signed-job", "trigger": "schedule", "backup_id": "b1"}
    rec["signature"] = wire.sign(key, rec)
    client = Client(e)
    assert client.call("POST", "/events", json={"records": [rec]})["accepted"] == 1
    assert client.call("POST", "/events", json={"records": [rec]})["accepted"] == 0  # resent
    forged = {**rec, "seq": 2, "job": "other"}  # signature of another record
    r = client.http().post("/events", json={"records": [forged]})
    assert r.status_code == 422 and "signature" in r.text
    other = ec.generate_private_key(ec.SECP256R1())
    wrong_key = {**forged, "signature": wire.sign(other, forged)}
    assert client.http().post("/events", json={"records": [wrong_key]}).status_code == 422
    client.close()
    rows = control_plane.rows("SELECT actor, signature FROM audit WHERE job = 'signed-job'")
    assert rows == [("schedule", rec["signature"])]
