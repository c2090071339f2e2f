"""The agents' API on ``agent_listen`` (mTLS, ``ssl.CERT_REQUIRED``): the client
certificate's key names the agent (pinned at enrollment); a revoked agent gets 403 at
once. Routes under ``/agent/v1`` (docs/control-plane.md)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from cryptography import x509
from fastapi import APIRouter, Body, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from dbcrate import wire
from dbcrate.server import audit
from dbcrate.server.ca import cert_pem, csr_key_sha256, key_sha256
from dbcrate.server.hub import Hub
from dbcrate.server.models import Agent, BackupIndex, Command, Definition, Org

MAX_WAIT = 25.0
COMMAND_STATUSES = ("running", "ok", "failed")


def _hub(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def peer_key(request: Request) -> str:
    """The pinned-key hash of the connection's client certificate. Raises 403."""
    tls = request.scope.get("extensions", {}).get("tls", {})
    chain = tls.get("client_cert_chain") or []
    if not chain:
        raise HTTPException(403, "a client certificate is required")
    return key_sha256(x509.load_pem_x509_certificate(chain[0].encode()).public_key())


def current_agent(request: Request, db: Session) -> Agent:
    """The enrolled, unrevoked agent of this connection. Raises 403."""
    found = db.scalar(select(Agent).where(Agent.key_sha256 == peer_key(request)))
    if found is None or found.revoked_at is not None:
        raise HTTPException(403, "this agent is revoked or unknown")
    found.last_seen = datetime.now(UTC)
    found.offline_noted = False
    return found


def _refuse_identity(body: Any) -> None:
    if wire.holds_age_identity(body):
        raise HTTPException(422, "an age identity (AGE-SECRET-KEY-1...) must never be sent")


router = APIRouter(prefix=wire.API)


@router.post("/heartbeat")
def heartbeat(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    _refuse_identity(body)
    hub = _hub(request)
    with hub.db() as db:
        a = current_agent(request, db)
        a.version = str(body.get("version") or "")[:50] or None
        a.can_restore = bool(body.get("can_restore"))
        a.heartbeat = {k: body.get(k) for k in ("jobs", "results", "connections",
                                                "config_version", "config_error")}
        db.commit()
        return {"config_version": a.config_version,
                "heartbeat_interval": hub.settings.heartbeat_interval.total_seconds()}


def definitions(db: Session, agent: Agent) -> dict[str, Any]:
    rows = db.scalars(select(Definition).where(Definition.agent_id == agent.id)).all()
    return {"version": agent.config_version,
            "jobs": {d.name: d.body for d in rows if d.kind == "job"},
            "targets": {d.name: d.body for d in rows if d.kind == "target"}}


@router.get("/config")
def get_config(request: Request) -> dict[str, Any]:
    with _hub(request).db() as db:
        a = current_agent(request, db)
        db.commit()
        return definitions(db, a)


def _queued(db: Session, agent_id: int) -> list[Command]:
    return list(db.scalars(select(Command).where(Command.agent_id == agent_id,
                                                 Command.status == "queued")
                           .order_by(Command.created_at)).all())


def _agent_id(request: Request) -> int:
    with _hub(request).db() as db:
        agent_id = current_agent(request, db).id
        db.commit()
        return agent_id


def _pending(hub: Hub, agent_id: int) -> bool:
    with hub.db() as db:
        return bool(_queued(db, agent_id))


def _deliver(hub: Hub, agent_id: int) -> dict[str, Any]:
    with hub.db() as db:
        found = _queued(db, agent_id)
        now = datetime.now(UTC)
        for c in found:
            c.delivered_at = c.delivered_at or now
        db.commit()
        return {"commands": [{"id": c.id, "kind": c.kind, "args": c.args,
                              "config_version": c.config_version} for c in found]}


@router.get("/commands")
async def commands(request: Request, wait: float = 0) -> dict[str, Any]:
    """Queued commands; with ``wait``, waits up to that many seconds (≤ 25) for one (or
    a config change) on the event loop, holding no worker thread."""
    hub = _hub(request)
    agent_id = await run_in_threadpool(_agent_id, request)
    seen = hub.generation(agent_id)
    if wait > 0 and not await run_in_threadpool(_pending, hub, agent_id):
        await hub.wait(agent_id, seen, min(wait, MAX_WAIT))
    return await run_in_threadpool(_deliver, hub, agent_id)


@router.post("/commands/{command_id}")
def command_status(request: Request, command_id: str,
                   body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    _refuse_identity(body)
    status = body.get("status")
    if status not in COMMAND_STATUSES:
        raise HTTPException(422, f"status: expected one of {', '.join(COMMAND_STATUSES)}")
    with _hub(request).db() as db:
        a = current_agent(request, db)
        c = db.get(Command, command_id)
        if c is None or c.agent_id != a.id:
            raise HTTPException(404, "no such command for this agent")
        if c.status in ("ok", "failed"):
            db.commit()
            return {"status": c.status}
        c.status = status
        c.error = str(body["error"])[:2000] if body.get("error") else None
        if status != "running":
            c.finished_at = datetime.now(UTC)
        db.commit()
        return {"status": c.status}


def _actor(db: Session, record: dict[str, Any], agent: Agent) -> str:
    cid = record.get("command_id")
    if cid:
        c = db.get(Command, str(cid))
        if c is not None and c.agent_id == agent.id:
            return c.actor
    return "schedule" if record.get("trigger") in ("schedule", "catchup") else f"agent:{agent.name}"


def index_entry(db: Session, agent: Agent, entry: dict[str, Any]) -> None:
    """Upsert one manifest summary (``list --json`` fields) into the index."""
    bid, target = str(entry.get("id", "")), str(entry.get("target", ""))
    if not bid or not target:
        raise HTTPException(422, "index: each entry needs id and target")
    db.execute(delete(BackupIndex).where(BackupIndex.agent_id == agent.id,
                                         BackupIndex.backup_id == bid,
                                         BackupIndex.target == target))
    db.add(BackupIndex(org_id=agent.org_id, agent_id=agent.id, backup_id=bid,
                       job=str(entry.get("job", "")), target=target,
                       finished_at=entry.get("finished_at"), summary=entry))


def _seq(record: dict[str, Any]) -> int:
    try:
        return int(record.get("seq", 0))
    except (TypeError, ValueError):
        raise HTTPException(422, "records: seq must be an integer") from None


@router.post("/events")
def events(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """Signed audit records and manifest index entries (``replace``: the agent's whole
    index, from a ``reindex``)."""
    _refuse_identity(body)
    with _hub(request).db() as db:
        a = current_agent(request, db)
        records = body.get("records") or []
        for r in records:
            if not isinstance(r, dict) or not wire.signature_ok(a.public_key, r):
                raise HTTPException(422, "records: a record's signature does not verify "
                                    "against this agent's key")
        if body.get("replace"):
            db.execute(delete(BackupIndex).where(BackupIndex.agent_id == a.id))
        for e in body.get("index") or []:
            index_entry(db, a, e)
        fresh = [r for r in records if _seq(r) > a.audit_seq]  # a resent batch: once
        if fresh:
            a.audit_seq = max(_seq(r) for r in fresh)
        db.commit()
        for r in fresh:
            audit.append(db, a.org_id, str(r.get("event", "agent.event"))[:50],
                         _actor(db, r, a), agent=a.name, job=r.get("job"),
                         backup_id=r.get("backup_id"),
                         detail={k: r[k] for k in ("trigger", "target", "size", "error",
                                                   "command_id", "seq", "ts") if k in r},
                         signature=str(r["signature"]), at=r.get("ts"))
        return {"accepted": len(fresh)}


@router.post("/renew")
def renew(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """A new certificate for the pinned key (a CSR for another key: 422)."""
    hub = _hub(request)
    with hub.db() as db:
        a = current_agent(request, db)
        csr = str(body.get("csr", ""))
        if csr_key_sha256(csr) != a.key_sha256:
            raise HTTPException(422, "csr: not the key pinned at enrollment")
        org = db.get(Org, a.org_id)
        assert org is not None
        cert = hub.ca.sign_agent(csr, a.name, org.name, hub.settings.agent_cert_ttl)
        a.cert_serial = format(cert.serial_number, "x")
        a.cert_not_after = cert.not_valid_after_utc
        db.commit()
        return {"cert": cert_pem(cert)}
