"""People: server-side sessions (an HttpOnly, SameSite=Lax cookie holding a random id;
only its SHA-256 is stored), a CSRF token per session checked on every change (form
field ``csrf_token`` or header ``X-CSRF-Token``), login throttling, and the role check
of ``policy``: 401 signed out, 403 role too low."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from fastapi import HTTPException, Request, Response
from sqlalchemy import select
from sqlalchemy.orm import Session

from dbcrate.server.models import Membership, Org, User, WebSession
from dbcrate.server.policy import allowed
from dbcrate.server.secrets import check_password, new_token, same, token_hash

COOKIE = "dbcrate_session"
SESSION_TTL = timedelta(hours=12)
_MAX_FAILURES = 5
_WINDOW = 900.0
_failures: dict[str, list[float]] = {}
_flock = threading.Lock()


@dataclass(frozen=True)
class Who:
    """The signed-in user of a request."""

    user_id: int
    email: str
    org_id: int
    org: str
    role: str
    csrf: str

    def need(self, action: str) -> None:
        """Raises 403 if this user's role may not do ``action``."""
        if not allowed(self.role, action):
            raise HTTPException(403, f"the {self.role} role may not do {action}")


def _throttled(key: str) -> bool:
    now = time.monotonic()
    with _flock:
        recent = [t for t in _failures.get(key, []) if now - t < _WINDOW]
        _failures[key] = recent
        return len(recent) >= _MAX_FAILURES


def _failed(key: str) -> None:
    with _flock:
        _failures.setdefault(key, []).append(time.monotonic())


def login(db: Session, response: Response, email: str, password: str,
          client: str) -> Who:
    """Check the password and open a session (sets the cookie). Raises 401 (wrong email
    or password, one message for both) or 429 (too many failures)."""
    key = f"{email.lower()}|{client}"
    if _throttled(key) or _throttled(email.lower()):
        raise HTTPException(429, "too many failed sign-ins; wait 15 minutes")
    user = db.scalar(select(User).where(User.email == email.lower()))
    if not check_password(user.password_hash if user else None, password) or user is None:
        _failed(key)
        _failed(email.lower())
        raise HTTPException(401, "wrong email or password")
    member = db.scalar(select(Membership).where(Membership.user_id == user.id)
                       .order_by(Membership.org_id))
    if member is None:
        raise HTTPException(401, "this user belongs to no org")
    sid, csrf = new_token(), new_token()
    db.add(WebSession(id_hash=token_hash(sid), user_id=user.id, org_id=member.org_id,
                      csrf=csrf, expires_at=datetime.now(UTC) + SESSION_TTL))
    db.commit()
    response.set_cookie(COOKIE, sid, httponly=True, samesite="lax",
                        secure=False, max_age=int(SESSION_TTL.total_seconds()), path="/")
    org = db.get(Org, member.org_id)
    assert org is not None
    return Who(user.id, user.email, member.org_id, org.name, member.role, csrf)


def who(db: Session, request: Request, *, change: bool = False,
        form_csrf: str | None = None) -> Who:
    """The session's user. Raises 401 without a valid session, 403 for a change
    (``change``) without the session's CSRF token."""
    sid = request.cookies.get(COOKIE)
    row = db.get(WebSession, token_hash(sid)) if sid else None
    if row is None or _aware(row.expires_at) < datetime.now(UTC):
        raise HTTPException(401, "sign in first")
    if change:
        given = request.headers.get("x-csrf-token") or form_csrf or ""
        if not same(given, row.csrf):
            raise HTTPException(403, "missing or wrong CSRF token")
    user = db.get(User, row.user_id)
    member = db.get(Membership, (row.user_id, row.org_id))
    org = db.get(Org, row.org_id)
    if user is None or member is None or org is None:
        raise HTTPException(401, "sign in first")
    return Who(user.id, user.email, org.id, org.name, member.role, row.csrf)


def logout(db: Session, request: Request) -> None:
    sid = request.cookies.get(COOKIE)
    if sid:
        row = db.get(WebSession, token_hash(sid))
        if row is not None:
            db.delete(row)
            db.commit()


def _aware(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)
