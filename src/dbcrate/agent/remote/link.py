"""The link thread of an enrolled agent: heartbeat, config, the command long-poll, events
and certificate renewal, all outbound over mTLS. When the server is down the link backs
off (≤ 5 min) and keeps the unsent audit records (a cursor into the audit log) and index
entries (an outbox); schedules keep running in the main loop meanwhile."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dbcrate import __version__, audit, catalog, wire
from dbcrate.agent.logs import event
from dbcrate.agent.remote import commands
from dbcrate.agent.remote.client import Client, Revoked
from dbcrate.agent.remote.files import Enrollment
from dbcrate.agent.remote.ledger import Ledger
from dbcrate.agent.remote.merge import effective
from dbcrate.agent.status import job_zone
from dbcrate.config import Config
from dbcrate.errors import ControlPlaneError, DbcrateError
from dbcrate.operations.keys import read_identities
from dbcrate.operations.listing import list_backups

MAX_BACKOFF = 300.0
POLL = 25.0


@dataclass
class Link:
    """One enrolled agent's link. ``apply`` installs a new effective config in the main
    loop; ``agent`` is the running ``Agent`` (its state DB, audit log and jobs)."""

    enrollment: Enrollment
    config_path: Path
    state_dir: Path
    agent: Any
    apply: Callable[[Config], None]
    stop: threading.Event = field(default_factory=threading.Event)
    remote: dict[str, Any] = field(default_factory=dict)
    version: int = -1
    interval: float = 30.0
    config_error: str | None = None
    unreported: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client = Client(self.enrollment)
        self.ledger = Ledger(self.state_dir)
        self.identities = read_identities(str(self.enrollment.identity_path))
        key = serialization.load_pem_private_key(self.enrollment.key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        self.key = key
        self.thread = threading.Thread(target=self.run, name="control-plane", daemon=True)

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def close(self) -> None:
        self.stop.set()
        self.thread.join(1.0)

    def run(self) -> None:
        #: commands a previous agent process claimed and did not finish: failed, reported
        self.unreported = self.ledger.interrupted("the agent stopped while it ran")
        backoff = 1.0
        while not self.stop.is_set():
            try:
                self.once()
                backoff = 1.0
            except Revoked as exc:
                event(logging.ERROR, exc.message, ev="remote")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
            except DbcrateError as exc:
                event(logging.WARNING, f"control plane: {exc.message}; retrying in "
                      f"{backoff:.0f}s", ev="remote")
                self.stop.wait(backoff * random.uniform(0.8, 1.2))  # noqa: S311
                backoff = min(backoff * 2, MAX_BACKOFF)
            except Exception:  # a bug must not end the link
                logging.getLogger("dbcrate.agent").exception("control-plane link")
                self.stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
        self.client.close()

    def once(self) -> None:
        """One round: renew if due, heartbeat, config, events, one long-poll."""
        self.renew_if_due()
        beat = self.client.call("POST", "/heartbeat", json=self.heartbeat())
        self.interval = float(beat.get("heartbeat_interval") or 30.0)
        if int(beat.get("config_version", 0)) != self.version:
            self.fetch_config()
        while self.unreported:
            cid = self.unreported[0]
            status, error = self.ledger.outcome(cid)
            self.client.call("POST", f"/commands/{cid}", json={"status": status,
                                                                "error": error})
            self.unreported.pop(0)
        self.flush()
        got = self.client.call("GET", "/commands",
                               params={"wait": min(POLL, max(1.0, self.interval))})
        for c in got.get("commands", []):
            if int(c.get("config_version", 0)) > self.version:
                self.fetch_config()
            self.handle(c)
        self.flush()

    # -- pieces ---------------------------------------------------------------------------

    def heartbeat(self) -> dict[str, Any]:
        cfg: Config = self.agent.config
        db = self.agent.db
        jobs, results = [], {}
        for j in cfg.jobs.values():
            nxt = self.agent.next_slot.get(j.name)
            jobs.append({"name": j.name, "engine": j.engine, "schedule": j.schedule,
                         "timezone": job_zone(cfg, j), "targets": list(j.targets),
                         "next_run": nxt.isoformat() if nxt else None})
            last = db.last_run(j.name) if db is not None else None
            if last is not None:
                results[j.name] = {"result": last.result, "backup_id": last.backup_id,
                                   "finished_at": last.finished_at.isoformat()
                                   if last.finished_at else None}
        return {"version": __version__, "jobs": jobs, "results": results,
                "can_restore": bool(cfg.agent.identity_file),
                "connections": sorted(cfg.agent.connections),
                "config_version": self.version, "config_error": self.config_error}

    def fetch_config(self) -> None:
        remote = self.client.call("GET", "/config")
        version = int(remote.get("version", 0))
        try:
            cfg = effective(self.config_path, remote, self.identities)
        except DbcrateError as exc:
            event(logging.ERROR, f"control-plane config {version} refused, keeping the old "
                  f"config: {exc.message}", ev="config.reject")
            self.version, self.config_error = version, exc.message
            return
        self.remote, self.version, self.config_error = remote, version, None
        self.apply(cfg)
        event(logging.INFO, f"control-plane config {version} applied ({len(cfg.jobs)} "
              "job(s))", ev="config.reload")

    def reload_local(self) -> Config:
        """The effective config after a local change (SIGHUP). Raises ``ConfigError``."""
        return effective(self.config_path, self.remote, self.identities)

    def renew_if_due(self) -> None:
        cert = self.client.cert()
        start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
        now = datetime.now(UTC)
        if now >= end:
            raise ControlPlaneError(f"this agent's certificate expired at {end.isoformat()} "
                                    "(it was offline longer than agent_cert_ttl)",
                                    hint="revoke it on the server and enroll it again with a "
                                    "new token")
        if now >= start + (end - start) * 2 / 3:
            new = self.client.renew()
            event(logging.INFO, f"certificate renewed until {new.not_valid_after_utc}",
                  ev="remote.renew")

    def handle(self, c: dict[str, Any]) -> None:
        """Claim a command (its id kept in the state DB: it runs at most once) and run it
        in a worker thread, so heartbeats and polls go on while it runs."""
        cid, kind = str(c["id"]), str(c.get("kind"))
        args = c.get("args") or {}
        head = audit.load_head(self.state_dir)
        if not self.ledger.claim(cid, kind, args.get("job"), head.seq if head else 0):
            status, error = self.ledger.outcome(cid)
            self.client.call("POST", f"/commands/{cid}",
                             json={"status": status, "error": error})
            return
        self.client.call("POST", f"/commands/{cid}", json={"status": "running"})
        threading.Thread(target=self._work, args=(cid, kind, args), daemon=True,
                         name=f"command-{kind}").start()

    def _work(self, cid: str, kind: str, args: dict[str, Any]) -> None:
        status, error = commands.run(self, kind, args)
        head = audit.load_head(self.state_dir)
        self.ledger.done(cid, status, error, head.seq if head else 0)
        client = Client(self.enrollment)
        backoff = 1.0
        try:
            while not self.stop.is_set():  # the outcome is reported, however long it takes
                try:
                    self.flush(client)
                    client.call("POST", f"/commands/{cid}",
                                json={"status": status, "error": error})
                    return
                except DbcrateError as exc:
                    event(logging.WARNING, f"command {cid} {status}; reporting it: "
                          f"{exc.message}; retrying in {backoff:.0f}s", ev="remote")
                    self.stop.wait(backoff)
                    backoff = min(backoff * 2, MAX_BACKOFF)
        finally:
            client.close()

    def index(self, replace: bool = False) -> None:
        """Queue the index entries (``list --json`` fields) of every backup this agent's
        config can list."""
        found, _ = list_backups(self.agent.config)
        entries = [{**catalog.summary(x.manifest), "target": t, "targets": list(x.targets)}
                   for x in found for t in x.targets]
        self.ledger.put({"index": entries, "replace": replace})

    def flush(self, client: Client | None = None) -> None:
        """Send unsent audit records (signed) and queued index entries (the server keeps
        a record or an entry sent twice once)."""
        client = client or self.client
        for oid, body in self.ledger.pending():
            client.call("POST", "/events", json=body)
            self.ledger.sent([oid])
        cursor = self.ledger.cursor()
        path = self.state_dir / audit.FILE_NAME
        head = audit.load_head(self.state_dir)
        if not path.exists() or (head is not None and head.seq <= cursor):
            return  # nothing new (the chain's head is in the state DB: no need to read it)
        batch: list[dict[str, Any]] = []
        for _, rec in audit.read(path):
            seq = int(rec.get("seq", 0))
            if seq <= cursor:
                continue
            out = {k: v for k, v in rec.items() if k not in ("hash", "prev")}
            out["agent_hash"] = rec.get("hash")
            cid = self.ledger.command_of(seq, rec.get("job")) if rec.get("trigger") == \
                "command" else None
            if cid:
                out["command_id"] = cid
            out["signature"] = wire.sign(self.key, out)
            batch.append(out)
            if len(batch) >= 200:
                self._send(client, batch)
                batch = []
        if batch:
            self._send(client, batch)

    def _send(self, client: Client, batch: list[dict[str, Any]]) -> None:
        client.call("POST", "/events", json={"records": batch})
        self.ledger.set_cursor(int(batch[-1]["seq"]))
