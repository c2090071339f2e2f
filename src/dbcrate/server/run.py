"""``dbcrate server run``: the dashboard/API listener and the agents' mTLS listener in
one process (two uvicorn servers on one event loop), plus a watcher that audits
``agent.offline`` once per outage. SIGTERM/SIGINT stop both (exit 0)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import ssl
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy import select

from dbcrate import notify
from dbcrate.config.agent import NotifyConfig
from dbcrate.errors import ControlPlaneError, DbcrateError
from dbcrate.server import agent_api, api, audit, missed
from dbcrate.server.ca import CA, SERVER_CERT, SERVER_KEY
from dbcrate.server.db import migrate, open_engine, sessions
from dbcrate.server.hub import Hub
from dbcrate.server.models import Agent
from dbcrate.server.settings import ServerSettings, host_port
from dbcrate.server.tls import ClientCertProtocol

log = logging.getLogger("dbcrate.server")


async def _refused(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, DbcrateError)
    return JSONResponse({"detail": exc.message}, status_code=422)


def make_hub(st: ServerSettings) -> Hub:
    eng = open_engine(st.database_url)
    migrate(eng)
    return Hub(st, eng, sessions(eng), CA(st.ca_dir))


def public_app(hub: Hub) -> FastAPI:
    app = FastAPI(title="dbcrate control plane", docs_url=None, redoc_url=None,
                  openapi_url=None)
    app.state.hub = hub
    app.add_exception_handler(DbcrateError, _refused)
    app.include_router(api.router)
    from dbcrate.server import web

    web.mount(app)
    return app


def agents_app(hub: Hub) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.hub = hub
    app.add_exception_handler(DbcrateError, _refused)
    app.include_router(agent_api.router)
    return app


def _mtls_context(hub: Hub) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(hub.ca.dir / SERVER_CERT, hub.ca.dir / SERVER_KEY)
    ctx.load_verify_locations(cafile=str(hub.ca.cert_path))
    ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


def configs(hub: Hub) -> tuple[uvicorn.Config, uvicorn.Config]:
    st = hub.settings
    host, port = host_port(st.listen, "listen", "server.toml")
    tls: dict[str, Any] = {}
    if st.tls_cert_file:
        tls = {"ssl_certfile": st.tls_cert_file, "ssl_keyfile": st.tls_key_file}
    public = uvicorn.Config(public_app(hub), host=host, port=port, log_level="warning",
                            access_log=False, timeout_graceful_shutdown=2,
                            proxy_headers=False, **tls)
    ahost, aport = host_port(st.agent_listen, "agent_listen", "server.toml")
    mtls = uvicorn.Config(agents_app(hub), host=ahost, port=aport, log_level="warning",
                          access_log=False, http=ClientCertProtocol,
                          ssl_certfile=str(hub.ca.dir / SERVER_CERT),
                          ssl_keyfile=str(hub.ca.dir / SERVER_KEY),
                          ssl_ca_certs=str(hub.ca.cert_path), ssl_cert_reqs=ssl.CERT_REQUIRED,
                          timeout_graceful_shutdown=2, timeout_keep_alive=35)
    return public, mtls


def tell(hub: Hub, job: str, title: str, body: str) -> None:
    """Notify ``notify_url_file``'s URLs (apprise); a failure is logged without the URL."""
    urls = hub.settings.notify_urls()
    if urls:
        entries = [NotifyConfig(url=u, on=("max_age",)) for u in urls]
        notify.send(entries, notify.Message("max_age", job, title, body))


def watch(hub: Hub, stop: threading.Event) -> None:
    """Audit ``agent.offline`` once when an agent is silent past ``offline_after``, and
    ``backup.missed`` once per cron slot no run reported (once per server process)."""
    seen: set[tuple[int, str, str]] = set()
    while not stop.wait(min(hub.settings.heartbeat_interval.total_seconds(), 10.0)):
        try:
            with hub.db() as db:
                for a in db.scalars(select(Agent).where(Agent.revoked_at.is_(None))).all():
                    if not a.offline_noted and a.last_seen is not None \
                            and not api.online(hub, a):
                        a.offline_noted = True
                        db.commit()
                        seen_at = api.aware(a.last_seen).isoformat()
                        audit.append(db, a.org_id, "agent.offline", "server", agent=a.name,
                                     detail={"last_seen": seen_at})
                        tell(hub, a.name, f"dbcrate: agent {a.name} is offline",
                             f"agent {a.name} made no request since {seen_at}")
                    for row in missed.job_rows(a, api.online(hub, a), hub.settings.offline):
                        slot = row["missed"]
                        if slot is None or (a.id, row["job"], slot.isoformat()) in seen:
                            continue
                        seen.add((a.id, row["job"], slot.isoformat()))
                        audit.append(db, a.org_id, "backup.missed", "server", agent=a.name,
                                     job=row["job"], detail={"slot": slot.isoformat()})
                        tell(hub, row["job"], f"dbcrate: {row['job']} missed a backup",
                             f"no run of {row['job']} on agent {a.name} was reported for "
                             f"its slot {slot.isoformat()}")
        except Exception as exc:  # the watcher must not stop the server
            log.warning("watcher: %s", exc)


class _Server(uvicorn.Server):
    """A uvicorn server whose signals are handled by :func:`serve` (for both at once)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def bind(value: str, key: str) -> socket.socket:
    """A listening socket on ``H:P``. Raises ``ControlPlaneError`` naming the key."""
    host, port = host_port(value, key, "server.toml")
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as exc:
        sock.close()
        raise ControlPlaneError(f"server.{key}: cannot listen on {value}: "
                                f"{exc.strerror or exc}",
                                hint="is another server running? change it in "
                                "server.toml") from None
    sock.set_inheritable(True)
    return sock


def serve(st: ServerSettings) -> int:
    """Run until SIGTERM/SIGINT; returns 0. Raises ``ControlPlaneError`` if a listener
    cannot bind."""
    hub = make_hub(st)
    public, mtls = configs(hub)
    sockets = [bind(st.listen, "listen"), bind(st.agent_listen, "agent_listen")]
    servers = [_Server(public), _Server(mtls)]

    def _stop(signum: int, frame: Any) -> None:
        for s in servers:
            s.should_exit = True

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGTERM, signal.SIGINT)}
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(hub, stop), daemon=True,
                               name="offline-watcher")
    watcher.start()
    print(f"dashboard and API on {st.listen}; agents (mTLS) on {st.agent_listen} "
          f"({datetime.now(UTC).isoformat(timespec='seconds')})", flush=True)

    async def main() -> None:
        await asyncio.gather(*(s.serve(sockets=[k]) for s, k in zip(servers, sockets,
                                                                      strict=True)))

    try:
        asyncio.run(main())
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        stop.set()
        for k in sockets:
            k.close()
        hub.engine.dispose()
    return 0
