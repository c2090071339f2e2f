"""The dashboard: server-rendered Jinja2 pages with vendored htmx (no JS build): sign in
→ databases (last backup, next run, missed/offline) → backups → Restore… → live status
→ audit; agents, enrollment (the token shown once with its ``agent enroll`` line),
users. Every change is a POST carrying the session's CSRF token."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import escape
from sqlalchemy import select

from dbcrate.errors import DbcrateError
from dbcrate.server import admin, api, audit, missed
from dbcrate.server.auth import COOKIE, Who, login, logout, who
from dbcrate.server.models import Agent, Command, Membership, OneTimeToken, Org, User
from dbcrate.server.policy import allowed
from dbcrate.server.secrets import token_hash

HERE = Path(__file__).parent
_ENV = Environment(loader=FileSystemLoader(HERE / "templates"),
                   autoescape=select_autoescape(["html"]))


def page(name: str, w: Who | None, status: int = 200, **ctx: Any) -> HTMLResponse:
    html = _ENV.get_template(name).render(
        who=w, can=(lambda action: w is not None and allowed(w.role, action)), **ctx)
    return HTMLResponse(html, status_code=status,
                        headers={"Cache-Control": "no-store", "X-Frame-Options": "DENY"})


def _signed_in(request: Request, *, change: bool = False,
               csrf: str | None = None) -> Who | Response:
    hub = api.hub_of(request)
    with hub.db() as db:
        try:
            return who(db, request, change=change, form_csrf=csrf)
        except HTTPException as exc:
            if exc.status_code == 401 and not change:
                return RedirectResponse("/login", status_code=303)
            raise


def mount(app: FastAPI) -> None:
    app.mount("/static", StaticFiles(directory=HERE / "static"), name="static")

    @app.get("/", include_in_schema=False)
    def home() -> Response:
        return RedirectResponse("/databases", status_code=303)

    @app.get("/login", include_in_schema=False)
    def login_form() -> Response:
        return page("login.html", None)

    @app.post("/login", include_in_schema=False)
    def login_post(request: Request, email: str = Form(...),
                   password: str = Form(...)) -> Response:
        redirect = RedirectResponse("/databases", status_code=303)
        with api.hub_of(request).db() as db:
            try:
                login(db, redirect, email, password,
                      request.client.host if request.client else "")
            except HTTPException as exc:
                return page("login.html", None, exc.status_code, error=exc.detail)
        return redirect

    @app.post("/logout", include_in_schema=False)
    def logout_post(request: Request, csrf_token: str = Form("")) -> Response:
        w = _signed_in(request, change=True, csrf=csrf_token)
        if isinstance(w, Response):
            return w
        with api.hub_of(request).db() as db:
            logout(db, request)
        out = RedirectResponse("/login", status_code=303)
        out.delete_cookie(COOKIE)
        return out

    @app.get("/setup", include_in_schema=False)
    def setup_form() -> Response:
        return page("setup.html", None)

    @app.post("/setup", include_in_schema=False)
    def setup_post(request: Request, token: str = Form(""),
                   email: str = Form(...), password: str = Form(...)) -> Response:
        hub = api.hub_of(request)
        with hub.db() as db:
            row = db.get(OneTimeToken, token_hash(token)) if token else None
            if row is None or row.kind != "admin" or row.used_at is not None:
                return page("setup.html", None, 403, error="this link is unknown or used")
            org = db.get(Org, row.org_id)
            assert org is not None
            try:
                admin.create_user(db, org.name, email, "admin", password)
            except DbcrateError as exc:
                return page("setup.html", None, 422, error=exc.message)
            row = db.get(OneTimeToken, token_hash(token))
            assert row is not None
            row.used_at = datetime.now(UTC)
            db.commit()
            audit.append(db, org.id, "user.create", email.lower(), detail={"role": "admin"})
        return RedirectResponse("/login", status_code=303)

    @app.get("/databases", include_in_schema=False)
    def databases(request: Request) -> Response:
        w = _signed_in(request)
        if isinstance(w, Response):
            return w
        hub = api.hub_of(request)
        with hub.db() as db:
            agents = db.scalars(select(Agent).where(Agent.org_id == w.org_id,
                                                    Agent.revoked_at.is_(None))).all()
            rows = [r for a in agents for r in missed.job_rows(a, api.online(hub, a),
                                                                hub.settings.offline)]
        return page("databases.html", w, rows=rows)

    @app.get("/backups", include_in_schema=False)
    def backups(request: Request, agent: str | None = None, job: str | None = None) -> Response:
        w = _signed_in(request)
        if isinstance(w, Response):
            return w
        with api.hub_of(request).db() as db:
            return page("backups.html", w, job=job,
                        backups=api.backups_of(db, w.org_id, agent, job))

    @app.get("/restore/{backup_id}", include_in_schema=False)
    def restore_form(request: Request, backup_id: str) -> Response:
        w = _signed_in(request)
        if isinstance(w, Response):
            return w
        w.need("restore")
        with api.hub_of(request).db() as db:
            found = [b for b in api.backups_of(db, w.org_id) if b["id"] == backup_id]
            if not found:
                raise HTTPException(404, "no such backup in this org")
            agents = [{"name": a.name, "connections": (a.heartbeat or {}).get("connections")
                       or []}
                      for a in db.scalars(select(Agent).where(
                          Agent.org_id == w.org_id, Agent.revoked_at.is_(None),
                          Agent.can_restore.is_(True)))]
        return page("restore.html", w, backup=found[0],
                    agents=[a for a in agents if a["connections"]])

    @app.post("/restore/{backup_id}", include_in_schema=False)
    def restore_post(request: Request, backup_id: str, agent: str = Form(...),
                     to: str = Form(...), clean: str = Form(""),
                     csrf_token: str = Form("")) -> Response:
        hub = api.hub_of(request)
        with hub.db() as db:
            w = who(db, request, change=True, form_csrf=csrf_token)
            w.need("restore")
            try:
                cid = api.dispatch_restore(hub, db, w, backup_id,
                                           {"agent": agent, "to": to, "clean": bool(clean)})
            except HTTPException as exc:  # shown in the page (htmx swaps 404/422)
                return HTMLResponse(f'<p class="bad" role="alert">{escape(str(exc.detail))}'
                                    "</p>", status_code=exc.status_code)
            c = db.get(Command, cid)
            assert c is not None
            return page("status.html", w, command=api.command_view(c))

    @app.get("/commands/{command_id}/status", include_in_schema=False)
    def command_status(request: Request, command_id: str) -> Response:
        w = _signed_in(request)
        if isinstance(w, Response):
            return w
        with api.hub_of(request).db() as db:
            c = db.get(Command, command_id)
            if c is None or c.org_id != w.org_id:
                raise HTTPException(404, "no such command in this org")
            return page("status.html", w, command=api.command_view(c))

    @app.get("/audit", include_in_schema=False)
    def audit_page(request: Request) -> Response:
        w = _signed_in(request)
        if isinstance(w, Response):
            return w
        with api.hub_of(request).db() as db:
            return page("audit.html", w, rows=list(reversed(api.audit_rows(db, w.org_id))))

    @app.get("/agents", include_in_schema=False)
    def agents_page(request: Request) -> Response:
        w = _signed_in(request)
        if isinstance(w, Response):
            return w
        hub = api.hub_of(request)
        with hub.db() as db:
            rows = db.scalars(select(Agent).where(Agent.org_id == w.org_id)
                              .order_by(Agent.name)).all()
            return page("agents.html", w, agents=[api.agent_row(hub, a) for a in rows])

    @app.post("/agents/{name}/revoke", include_in_schema=False)
    def revoke_post(request: Request, name: str,
                    csrf_token: str = Form("")) -> Response:
        with api.hub_of(request).db() as db:
            w = who(db, request, change=True, form_csrf=csrf_token)
            w.need("agents.revoke")
            a = api.agent_in_org(db, w, name)
            a.revoked_at = a.revoked_at or datetime.now(UTC)
            db.commit()
            audit.append(db, w.org_id, "agent.revoke", w.email, agent=name)
        return RedirectResponse("/agents", status_code=303)

    @app.get("/enroll", include_in_schema=False)
    def enroll_page(request: Request) -> Response:
        w = _signed_in(request)
        if isinstance(w, Response):
            return w
        w.need("tokens.create")
        return page("enroll.html", w)

    @app.post("/enroll", include_in_schema=False)
    def enroll_post(request: Request, name: str = Form(""), ttl: str = Form("1h"),
                    csrf_token: str = Form("")) -> Response:
        hub = api.hub_of(request)
        with hub.db() as db:
            w = who(db, request, change=True, form_csrf=csrf_token)
            w.need("tokens.create")
            tok = admin.enroll_token(db, hub.settings, w.org, name or None,
                                     admin.check_ttl(ttl))
            audit.append(db, w.org_id, "token.create", w.email, agent=name or None)
        return page("enroll.html", w, token=tok)

    @app.get("/users", include_in_schema=False)
    def users_page(request: Request, error: str | None = None) -> Response:
        w = _signed_in(request)
        if isinstance(w, Response):
            return w
        w.need("users.manage")
        with api.hub_of(request).db() as db:
            users = [{"email": u.email, "role": m.role} for u, m in db.execute(
                select(User, Membership).join(Membership, Membership.user_id == User.id)
                .where(Membership.org_id == w.org_id).order_by(User.email))]
        return page("users.html", w, users=users, error=error)

    @app.post("/users", include_in_schema=False)
    def users_post(request: Request, email: str = Form(...), role: str = Form(...),
                   password: str = Form(...), csrf_token: str = Form("")) -> Response:
        with api.hub_of(request).db() as db:
            w = who(db, request, change=True, form_csrf=csrf_token)
            w.need("users.manage")
            try:
                admin.create_user(db, w.org, email, role, password)
            except DbcrateError as exc:
                return users_page(request, error=exc.message)
            audit.append(db, w.org_id, "user.create", w.email, detail={"email": email.lower(),
                                                                      "role": role})
        return RedirectResponse("/users", status_code=303)
