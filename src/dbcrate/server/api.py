"""The JSON API under ``/api/v1`` on ``listen`` (session cookie + ``X-CSRF-Token``):
401 signed out, 403 role too low (nothing queued), 404 another org's thing, 422 invalid
(the key named). Enrollment (``POST /api/v1/enroll``) needs the one-time token only."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from fastapi import APIRouter, Body, HTTPException, Request, Response
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from dbcrate import wire
from dbcrate.server import audit
from dbcrate.server.auth import Who, login, who
from dbcrate.server.ca import cert_pem, csr_key_sha256
from dbcrate.server.definitions import DefinitionRefused, prepare
from dbcrate.server.hub import Hub
from dbcrate.server.models import (
    Agent,
    AuditRecord,
    BackupIndex,
    Command,
    Definition,
    OneTimeToken,
    Org,
)
from dbcrate.server.secrets import token_hash

#: a command delivered but not acknowledged for this long shows ``lost``
LOST_AFTER = timedelta(minutes=2)

router = APIRouter(prefix="/api/v1")


def hub_of(request: Request) -> Hub:
    hub: Hub = request.app.state.hub
    return hub


def aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


# -- enrollment ------------------------------------------------------------------------


def _claim(db: Session, token: str) -> OneTimeToken:
    """Mark the enrollment token used (once). Raises 403 (unknown, used, expired)."""
    parts = token.split(".")
    secret = parts[1] if len(parts) == 3 else token
    h = token_hash(secret)
    row = db.get(OneTimeToken, h)
    if row is None or row.kind != "enroll" or aware(row.expires_at) < datetime.now(UTC):
        raise HTTPException(403, "the enrollment token is unknown or expired")
    done = db.execute(update(OneTimeToken).where(OneTimeToken.hash == h,
                                                 OneTimeToken.used_at.is_(None))
                      .values(used_at=datetime.now(UTC)))
    if getattr(done, "rowcount", 0) != 1:
        raise HTTPException(403, "the enrollment token was already used")
    return row


@router.post("/enroll")
def enroll(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """{token, csr, name, recipient} -> {cert, ca, agent_url}."""
    hub = hub_of(request)
    if wire.holds_age_identity(body):
        raise HTTPException(422, "an age identity (AGE-SECRET-KEY-1...) must never be sent")
    for k in ("token", "csr", "recipient"):
        if not isinstance(body.get(k), str) or not body[k]:
            raise HTTPException(422, f"{k}: required")
    if not str(body["recipient"]).startswith("age1"):
        raise HTTPException(422, "recipient: expected an age recipient (age1...)")
    pinned = csr_key_sha256(body["csr"])
    with hub.db() as db:
        tok = _claim(db, body["token"])
        name = tok.name or str(body.get("name") or "")
        if not name or len(name) > 200 or not name.replace("-", "").replace("_", "")\
                .replace(".", "").isalnum():
            db.rollback()
            raise HTTPException(422, "name: letters, digits, '-', '_' and '.' only")
        org = db.get(Org, tok.org_id)
        assert org is not None
        old = db.scalar(select(Agent).where(Agent.org_id == org.id, Agent.name == name))
        if old is not None and old.revoked_at is None:
            db.rollback()
            raise HTTPException(422, f"name: an agent named {name!r} is enrolled; revoke it "
                                "first")
        cert = hub.ca.sign_agent(body["csr"], name, org.name, hub.settings.agent_cert_ttl)
        pub = cert.public_key().public_bytes(serialization.Encoding.PEM,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
        # a revoked agent enrolled again keeps its row (commands, index, definitions):
        # new key, recipient and certificate; secrets sealed to the old recipient must be
        # sent again (the agent reports them as a config_error until then)
        agent = old or Agent(org_id=org.id, name=name, config_version=0)
        agent.key_sha256, agent.public_key = pinned, pub.decode()
        agent.recipient, agent.cert_serial = body["recipient"], format(cert.serial_number, "x")
        agent.cert_not_after, agent.enrolled_at = cert.not_valid_after_utc, datetime.now(UTC)
        agent.revoked_at, agent.last_seen, agent.can_restore = None, None, False
        agent.heartbeat, agent.offline_noted, agent.audit_seq = {}, False, 0
        agent.config_version = (agent.config_version or 0) + (1 if old else 0)
        db.add(agent)
        db.commit()
        audit.append(db, org.id, "agent.enroll", f"agent:{name}", agent=name)
    return {"cert": cert_pem(cert), "ca": hub.ca.cert_pem().decode(),
            "agent_url": hub.settings.effective_agent_url, "name": name}


# -- sessions -------------------------------------------------------------------------


@router.post("/session")
def session(request: Request, response: Response,
            body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    email, password = body.get("email"), body.get("password")
    if not isinstance(email, str) or not isinstance(password, str):
        raise HTTPException(422, "email and password: required")
    with hub_of(request).db() as db:
        w = login(db, response, email, password, request.client.host if request.client else "")
    return {"csrf_token": w.csrf, "user": w.email, "org": w.org, "role": w.role}


# -- agents ---------------------------------------------------------------------------


def agent_in_org(db: Session, w: Who, name: str) -> Agent:
    """The agent ``name`` of the user's org. Raises 404 (also for another org's)."""
    a = db.scalar(select(Agent).where(Agent.org_id == w.org_id, Agent.name == name))
    if a is None:
        raise HTTPException(404, f"no agent named {name!r} in this org")
    return a


def online(hub: Hub, a: Agent) -> bool:
    return (a.revoked_at is None and a.last_seen is not None
            and datetime.now(UTC) - aware(a.last_seen) <= hub.settings.offline)


def agent_row(hub: Hub, a: Agent) -> dict[str, Any]:
    return {"name": a.name, "online": online(hub, a),
            "last_seen": aware(a.last_seen).isoformat() if a.last_seen else None,
            "version": a.version, "can_restore": a.can_restore,
            "revoked": a.revoked_at is not None,
            "config_error": (a.heartbeat or {}).get("config_error")}


@router.get("/agents")
def agents(request: Request) -> list[dict[str, Any]]:
    hub = hub_of(request)
    with hub.db() as db:
        w = who(db, request)
        w.need("read")
        rows = db.scalars(select(Agent).where(Agent.org_id == w.org_id)
                          .order_by(Agent.name)).all()
        return [agent_row(hub, a) for a in rows]


@router.post("/agents/{name}/revoke")
def revoke(request: Request, name: str) -> dict[str, Any]:
    with hub_of(request).db() as db:
        w = who(db, request, change=True)
        w.need("agents.revoke")
        a = agent_in_org(db, w, name)
        a.revoked_at = a.revoked_at or datetime.now(UTC)
        db.commit()
        audit.append(db, w.org_id, "agent.revoke", w.email, agent=name)
        return {"name": name, "revoked": True}


def put_definition(request: Request, name: str, kind: str, item: str,
                   body: dict[str, Any]) -> dict[str, Any]:
    with hub_of(request).db() as db:
        w = who(db, request, change=True)
        w.need("definitions.write")
        a = agent_in_org(db, w, name)
        try:
            table = prepare(body, kind, item, a.recipient)
        except DefinitionRefused as exc:
            raise HTTPException(422, exc.message) from None
        row = db.scalar(select(Definition).where(Definition.agent_id == a.id,
                                                 Definition.kind == kind,
                                                 Definition.name == item))
        if row is None:
            db.add(Definition(agent_id=a.id, kind=kind, name=item, body=table))
        else:
            row.body = table
        a.config_version += 1
        version = a.config_version
        db.commit()
        hub_of(request).poke(a.id)  # its long-poll returns, so the new config applies now
        audit.append(db, w.org_id, f"{kind}.define", w.email, agent=name,
                     job=item if kind == "job" else None, detail={"config_version": version})
        return {"config_version": version, "sealed": sorted(k for k in table
                                                              if k.endswith("_sealed"))}


@router.delete("/agents/{name}/{kind}/{item}")
def delete_definition(request: Request, name: str, kind: str, item: str) -> dict[str, Any]:
    """Remove a job (``jobs``) or target (``targets``) the server defined (admin)."""
    if kind not in ("jobs", "targets"):
        raise HTTPException(404, "no such resource")
    with hub_of(request).db() as db:
        w = who(db, request, change=True)
        w.need("definitions.write")
        a = agent_in_org(db, w, name)
        row = db.scalar(select(Definition).where(Definition.agent_id == a.id,
                                                 Definition.kind == kind[:-1],
                                                 Definition.name == item))
        if row is None:
            raise HTTPException(404, f"no {kind[:-1]} {item!r} defined for {name}")
        db.delete(row)
        a.config_version += 1
        version = a.config_version
        db.commit()
        hub_of(request).poke(a.id)
        audit.append(db, w.org_id, f"{kind[:-1]}.delete", w.email, agent=name,
                     job=item if kind == "jobs" else None, detail={"config_version": version})
        return {"config_version": version}


@router.put("/agents/{name}/jobs/{job}")
def put_job(request: Request, name: str, job: str,
            body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    return put_definition(request, name, "job", job, body)


@router.put("/agents/{name}/targets/{target}")
def put_target(request: Request, name: str, target: str,
               body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    return put_definition(request, name, "target", target, body)


def queue(hub: Hub, db: Session, w: Who, a: Agent, kind: str, args: dict[str, Any],
          job: str | None = None) -> str:
    """Queue a command for ``a`` (audited as ``KIND.request``) and wake its long-poll."""
    cid = str(uuid.uuid4())
    db.add(Command(id=cid, org_id=w.org_id, agent_id=a.id, kind=kind, args=args,
                   config_version=a.config_version, actor=w.email, status="queued",
                   created_at=datetime.now(UTC)))
    db.commit()
    audit.append(db, w.org_id, f"{kind}.request", w.email, agent=a.name, job=job,
                 backup_id=args.get("backup_id"), detail={"command_id": cid})
    hub.poke(a.id)
    return cid


@router.post("/agents/{name}/jobs/{job}/backup")
def backup_now(request: Request, name: str, job: str) -> dict[str, Any]:
    hub = hub_of(request)
    with hub.db() as db:
        w = who(db, request, change=True)
        w.need("backup")
        a = agent_in_org(db, w, name)
        return {"command_id": queue(hub, db, w, a, "backup", {"job": job}, job)}


@router.post("/agents/{name}/reindex")
def reindex(request: Request, name: str) -> dict[str, Any]:
    hub = hub_of(request)
    with hub.db() as db:
        w = who(db, request, change=True)
        w.need("definitions.write")
        a = agent_in_org(db, w, name)
        return {"command_id": queue(hub, db, w, a, "reindex", {})}


# -- backups, commands, audit ------------------------------------------------------------


def backups_of(db: Session, org_id: int, agent: str | None = None,
               job: str | None = None) -> list[dict[str, Any]]:
    q = (select(BackupIndex, Agent.name).join(Agent, Agent.id == BackupIndex.agent_id)
         .where(BackupIndex.org_id == org_id))
    if agent:
        q = q.where(Agent.name == agent)
    if job:
        q = q.where(BackupIndex.job == job)
    rows = db.execute(q.order_by(BackupIndex.finished_at.desc())).all()
    return [{**b.summary, "agent": name} for b, name in rows]


@router.get("/backups")
def backups(request: Request, agent: str | None = None,
            job: str | None = None) -> list[dict[str, Any]]:
    with hub_of(request).db() as db:
        w = who(db, request)
        w.need("read")
        return backups_of(db, w.org_id, agent, job)


@router.post("/backups/{backup_id}/restore")
def restore(request: Request, backup_id: str,
            body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    hub = hub_of(request)
    with hub.db() as db:
        w = who(db, request, change=True)
        w.need("restore")
        return {"command_id": dispatch_restore(hub, db, w, backup_id, body)}


def dispatch_restore(hub: Hub, db: Session, w: Who, backup_id: str,
                     body: dict[str, Any]) -> str:
    """Queue a restore of ``backup_id`` on ``body["agent"]`` into its connection
    ``body["to"]``. Raises 404 (unknown backup or agent) or 422."""
    entry = db.scalar(select(BackupIndex).where(BackupIndex.org_id == w.org_id,
                                                BackupIndex.backup_id == backup_id))
    if entry is None:
        raise HTTPException(404, f"no backup {backup_id} in this org")
    name = body.get("agent")
    if not isinstance(name, str) or not name:
        raise HTTPException(422, "agent: required")
    a = agent_in_org(db, w, name)
    if not a.can_restore:
        raise HTTPException(422, f"agent: {name} cannot restore (no [agent] identity_file)")
    to = body.get("to")
    raw = (a.heartbeat or {}).get("connections")
    connections = [str(c) for c in raw] if isinstance(raw, list) else []
    if not isinstance(to, str) or to not in connections:
        raise HTTPException(422, f"to: not one of {name}'s [agent.connections] "
                            f"({', '.join(connections) or 'none'})")
    args = {"backup_id": backup_id, "job": entry.job, "target": entry.target, "to": to,
            "clean": bool(body.get("clean"))}
    return queue(hub, db, w, a, "restore", args, entry.job)


def command_view(c: Command) -> dict[str, Any]:
    status = c.status
    if status == "queued" and c.delivered_at is not None \
            and datetime.now(UTC) - aware(c.delivered_at) > LOST_AFTER:
        status = "lost"
    return {"id": c.id, "kind": c.kind, "status": status, "error": c.error,
            "args": c.args, "actor": c.actor}


@router.get("/commands/{command_id}")
def command(request: Request, command_id: str) -> dict[str, Any]:
    with hub_of(request).db() as db:
        w = who(db, request)
        w.need("read")
        c = db.get(Command, command_id)
        if c is None or c.org_id != w.org_id:
            raise HTTPException(404, "no such command in this org")
        return command_view(c)


def audit_rows(db: Session, org_id: int, event: str | None = None,
               job: str | None = None) -> list[dict[str, Any]]:
    q = select(AuditRecord).where(AuditRecord.org_id == org_id)
    if event:
        q = q.where(AuditRecord.event == event)
    if job:
        q = q.where(AuditRecord.job == job)
    return [{"seq": r.seq, "at": r.at, "event": r.event, "actor": r.actor, "agent": r.agent,
             "job": r.job, "backup_id": r.backup_id}
            for r in db.scalars(q.order_by(AuditRecord.seq)).all()]


@router.get("/audit")
def audit_list(request: Request, event: str | None = None,
               job: str | None = None) -> list[dict[str, Any]]:
    with hub_of(request).db() as db:
        w = who(db, request)
        w.need("read")
        return audit_rows(db, w.org_id, event, job)
