"""What the ``dbcrate server`` commands do besides running: initialise a data dir, add a
user, issue an enrollment token or a first-admin link."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from dbcrate.errors import ConfigError, UsageError
from dbcrate.server import settings as settings_mod
from dbcrate.server.ca import CA
from dbcrate.server.db import migrate, open_engine, sessions
from dbcrate.server.models import Membership, OneTimeToken, Org, User
from dbcrate.server.policy import ROLES
from dbcrate.server.secrets import hash_password, new_token, token_hash
from dbcrate.server.settings import ServerSettings

ADMIN_LINK_TTL = timedelta(hours=24)
#: the enrollment token's text: ``dbc1.<secret>.<CA SHA-256>``
TOKEN_PREFIX = "dbc1"  # noqa: S105 - a format marker


def initialised(directory: Path) -> bool:
    return (directory / settings_mod.FILE_NAME).exists()


def init(directory: Path, values: dict[str, str]) -> ServerSettings:
    """Create ``server.toml``, the DB schema, the org and the CA in ``directory``.
    Raises ``UsageError`` if it is already initialised, ``ConfigError`` for a bad value."""
    if initialised(directory):
        raise UsageError(f"{directory} is already initialised",
                         hint="edit its server.toml, or choose another --data-dir")
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    directory.chmod(0o700)
    settings_mod.write(directory, values)
    try:
        st = settings_mod.load(directory)
        eng = open_engine(st.database_url)
        migrate(eng)
        if st.database is None:
            (directory / settings_mod.DB_NAME).chmod(0o600)
        with sessions(eng)() as db:
            org_id(db, st.org, create=True)
            db.commit()
        host, _ = settings_mod.host_port(st.agent_listen, "agent_listen", "server.toml")
        from urllib.parse import urlsplit

        url_host = urlsplit(st.effective_agent_url).hostname or host
        CA(st.ca_dir).create(st.org, [url_host, host])
        eng.dispose()
    except BaseException:
        (directory / settings_mod.FILE_NAME).unlink(missing_ok=True)
        raise
    return st


def org_id(db: Session, name: str, *, create: bool = False) -> int:
    """The id of org ``name``. Raises ``UsageError`` for an unknown org."""
    found = db.scalar(select(Org.id).where(Org.name == name))
    if found is not None:
        return int(found)
    if not create:
        raise UsageError(f"no org named {name!r}", hint="see server.toml's org, or pass --org")
    org = Org(name=name)
    db.add(org)
    db.flush()
    return org.id


def create_user(db: Session, org: str, email: str, role: str, password: str) -> None:
    """Add ``email`` with ``role`` in ``org`` (a known email gets the role in that org
    and a new password). Raises ``UsageError``."""
    if role not in ROLES:
        raise UsageError(f"unknown role {role!r}", hint=f"expected one of {', '.join(ROLES)}")
    if "@" not in email or len(email) > 320:
        raise UsageError(f"{email!r} is not an email address")
    if len(password) < 8:
        raise UsageError("password: at least 8 characters")
    oid = org_id(db, org, create=True)
    user = db.scalar(select(User).where(User.email == email.lower()))
    if user is None:
        user = User(email=email.lower(), password_hash=hash_password(password),
                    created_at=datetime.now(UTC))
        db.add(user)
        db.flush()
    else:
        user.password_hash = hash_password(password)
    member = db.get(Membership, (user.id, oid))
    if member is None:
        db.add(Membership(user_id=user.id, org_id=oid, role=role))
    else:
        member.role = role
    db.commit()


def one_time(db: Session, kind: str, org: str, ttl: timedelta,
             name: str | None = None) -> tuple[str, datetime]:
    """A new one-time token of ``kind`` (stored hashed); returns (token, expires_at)."""
    token = new_token()
    expires = datetime.now(UTC) + ttl
    db.add(OneTimeToken(hash=token_hash(token), kind=kind, org_id=org_id(db, org),
                        name=name, expires_at=expires))
    db.commit()
    return token, expires


def has_admin(db: Session) -> bool:
    return db.scalar(select(Membership).where(Membership.role == "admin").limit(1)) is not None


@dataclass(frozen=True)
class EnrollToken:
    token: str
    expires_at: datetime
    command: str

    def json(self) -> str:
        return json.dumps({"token": self.token, "command": self.command,
                           "expires_at": self.expires_at.isoformat().replace("+00:00", "Z")})


def enroll_token(db: Session, st: ServerSettings, org: str, name: str | None,
                 ttl: timedelta) -> EnrollToken:
    """A one-use enrollment token for ``org`` carrying the CA's SHA-256."""
    secret, expires = one_time(db, "enroll", org, ttl, name)
    token = f"{TOKEN_PREFIX}.{secret}.{CA(st.ca_dir).fingerprint()}"
    server = public_url(st)
    line = f"dbcrate agent enroll --server {server} --token {token}"
    if name:
        line += f" --name {name}"
    return EnrollToken(token, expires, line)


def public_url(st: ServerSettings) -> str:
    """The dashboard/API URL agents enroll at."""
    host, port = settings_mod.host_port(st.listen, "listen", "server.toml")
    scheme = "https" if st.tls_cert_file else "http"
    shown = f"[{host}]" if ":" in host else host
    return f"{scheme}://{shown}:{port}"


def check_ttl(text: str) -> timedelta:
    """``--ttl``. Raises ``ConfigError``."""
    from dbcrate.config.timing import ScheduleProblem, parse_duration

    try:
        return parse_duration(text)
    except ScheduleProblem as exc:
        raise ConfigError(str(exc), key="--ttl") from None
