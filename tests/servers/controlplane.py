"""The control plane (``dbcrate server run``) as a real subprocess on loopback ports.

- ``control_plane`` (session): an initialised data dir (org ``acme``, plus ``other``),
  users admin/operator/viewer of acme and admin of other, ``agent_cert_ttl = "60s"``,
  ``heartbeat_interval = "2s"``, ``offline_after = "8s"``; started once; ``.stop()`` and
  ``.start()`` for the outage tests. ``.api(email)`` is a signed-in httpx client sending
  the CSRF header. ``new_control_plane(dir)`` initialises another one.
"""

from __future__ import annotations

import json
import shutil
import socket
import sqlite3
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.lib.daemons import start_listening, stop
from tests.lib.e2e import DBCRATE

PASSWORD = "correct horse battery"
USERS = {"admin@acme.test": ("admin", "acme"), "op@acme.test": ("operator", "acme"),
         "viewer@acme.test": ("viewer", "acme"), "admin@other.test": ("admin", "other")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(*args: str, input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run([DBCRATE, *args], input=input, capture_output=True, text=True,
                       timeout=120)
    if check and p.returncode != 0:
        raise AssertionError(f"dbcrate {' '.join(args[:3])} exited {p.returncode}:\n"
                             f"{p.stdout}\n{p.stderr}")
    return p


class _Hook(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.received.append(json.loads(body or b"{}"))  # type: ignore[attr-defined]
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


def hook_receiver() -> ThreadingHTTPServer:
    """A loopback HTTP server keeping the JSON bodies posted to it (apprise json://)."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Hook)
    srv.received = []  # type: ignore[attr-defined]
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv


@dataclass
class ControlPlane:
    dir: Path
    port: int
    agent_port: int
    proc: subprocess.Popen[bytes] | None = None
    logs: list[Path] = field(default_factory=list)
    first_output: str = ""
    hook: ThreadingHTTPServer | None = None

    def notified(self) -> list[dict[str, Any]]:
        return list(self.hook.received) if self.hook else []  # type: ignore[attr-defined]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def agent_url(self) -> str:
        return f"https://localhost:{self.agent_port}"

    def start(self) -> None:
        log = self.dir.parent / f"server-{len(self.logs)}.log"
        self.logs.append(log)
        self.proc = start_listening([DBCRATE, "server", "run", "--data-dir", str(self.dir)],
                                    self.agent_port, log, self.dir.parent, "dbcrate server")
        socket.create_connection(("127.0.0.1", self.port), timeout=5).close()

    def stop(self) -> None:
        stop(self.proc)
        self.proc = None

    def log_text(self) -> str:
        return "".join(p.read_text(errors="replace") for p in self.logs if p.exists())

    def token(self, name: str | None = None, org: str = "acme") -> str:
        """A new enrollment token (made in-process, as `server enroll-token` does)."""
        from dbcrate.server import admin, settings
        from dbcrate.server.db import open_engine, sessions

        st = settings.load(self.dir)
        eng = open_engine(st.database_url)
        try:
            with sessions(eng)() as db:
                return admin.enroll_token(db, st, org, name, timedelta(hours=1)).token
        finally:
            eng.dispose()

    def api(self, email: str) -> httpx.Client:
        """A new signed-in client (a session of its own)."""
        c = httpx.Client(base_url=self.url, timeout=30)
        r = c.post("/api/v1/session", json={"email": email, "password": PASSWORD})
        assert r.status_code == 200, r.text
        c.headers["X-CSRF-Token"] = r.json()["csrf_token"]
        return c

    def rows(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        conn = sqlite3.connect(self.dir / "server.db", timeout=30)
        try:
            out = list(conn.execute(sql, args))
            conn.commit()
            return out
        finally:
            conn.close()


def new_control_plane(base: Path, database: str | None = None, *,
                      cli_user: bool = False) -> ControlPlane:
    """Initialise (not start) a control plane in ``base`` with the users of ``USERS``
    (metadata DB: SQLite in the data dir, or ``database``)."""
    base.mkdir(parents=True, exist_ok=True)
    cp = ControlPlane(base / "data", free_port(), free_port())
    extra = ["--database", database] if database else []
    init = run_cli("server", "init", "--data-dir", str(cp.dir), "--org", "acme",
                   "--listen", f"127.0.0.1:{cp.port}",
                   "--agent-listen", f"127.0.0.1:{cp.agent_port}", *extra)
    cp.first_output = init.stdout
    toml = cp.dir / "server.toml"
    toml.write_text(toml.read_text() + 'agent_cert_ttl = "60s"\nheartbeat_interval = "2s"\n'
                    'offline_after = "8s"\n')
    pw = base / "pw"
    pw.write_text(PASSWORD + "\n")
    users = list(USERS.items())
    if cli_user:  # the first one through the CLI, as a user would
        (email, (role, org)), *users = users
        run_cli("server", "create-user", email, "--role", role, "--org", org,
                "--data-dir", str(cp.dir), "--password-file", str(pw))
    from dbcrate.server import admin
    from dbcrate.server.db import open_engine, sessions

    eng = open_engine(database or f"sqlite:///{cp.dir / 'server.db'}")
    with sessions(eng)() as db:
        for email, (role, org) in users:
            admin.create_user(db, org, email, role, PASSWORD)
    eng.dispose()
    return cp


@pytest.fixture(scope="session")
def control_plane() -> Iterator[ControlPlane]:
    base = Path(tempfile.mkdtemp(prefix="dbcrate-cp-"))
    cp = new_control_plane(base, cli_user=True)
    cp.hook = hook_receiver()
    urls = base / "notify-urls"
    urls.write_text(f"json://127.0.0.1:{cp.hook.server_address[1]}/hook\n")
    urls.chmod(0o600)
    toml = cp.dir / "server.toml"
    toml.write_text(toml.read_text() + f"notify_url_file = {json.dumps(str(urls))}\n")
    cp.start()
    try:
        yield cp
    finally:
        cp.stop()
        cp.hook.shutdown()
        shutil.rmtree(base, ignore_errors=True)
