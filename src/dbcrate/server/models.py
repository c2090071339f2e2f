"""The metadata DB (SQLAlchemy 2 declarative models). It holds schedules, definitions,
the manifest index, commands and the audit log: never a private key, a password in the
clear or a byte of backup data (docs/control-plane.md). Secrets in definitions are
stored sealed to the agent's age recipient (``KEY_sealed``)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Org(Base):
    __tablename__ = "orgs"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)
    password_hash: Mapped[str] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class Membership(Base):
    """A user's role in one org (viewer | operator | admin)."""

    __tablename__ = "memberships"
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))


class WebSession(Base):
    """A server-side session: the cookie holds a random id; only its SHA-256 is kept."""

    __tablename__ = "sessions"
    id_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"))
    csrf: Mapped[str] = mapped_column(String(64))
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))


class OneTimeToken(Base):
    """An enrollment token (``kind = enroll``) or a first-admin link (``kind = admin``):
    stored as SHA-256, used once, until ``expires_at``."""

    __tablename__ = "tokens"
    hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    kind: Mapped[str] = mapped_column(String(20))
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"))
    name: Mapped[str | None] = mapped_column(String(200), nullable=True)
    expires_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    used_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Agent(Base):
    __tablename__ = "agents"
    __table_args__ = (UniqueConstraint("org_id", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"))
    name: Mapped[str] = mapped_column(String(200))
    key_sha256: Mapped[str] = mapped_column(String(64))  # pinned public key (SPKI DER)
    public_key: Mapped[str] = mapped_column(Text)  # PEM, checks the records it signs
    recipient: Mapped[str] = mapped_column(String(200))  # age recipient for sealed secrets
    cert_serial: Mapped[str] = mapped_column(String(64))
    cert_not_after: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    enrolled_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    last_seen: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    version: Mapped[str | None] = mapped_column(String(50), nullable=True)
    can_restore: Mapped[bool] = mapped_column(Boolean, default=False)
    heartbeat: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    config_version: Mapped[int] = mapped_column(Integer, default=0)
    offline_noted: Mapped[bool] = mapped_column(Boolean, default=False)
    #: the seq (in the agent's own log) of the last audit record accepted from it
    audit_seq: Mapped[int] = mapped_column(Integer, default=0)


class Definition(Base):
    """A job or target table the server defines for one agent (TOML table as JSON;
    secrets sealed)."""

    __tablename__ = "definitions"
    __table_args__ = (UniqueConstraint("agent_id", "kind", "name"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    kind: Mapped[str] = mapped_column(String(10))  # job | target
    name: Mapped[str] = mapped_column(String(200))
    body: Mapped[dict[str, object]] = mapped_column(JSON)


class Command(Base):
    __tablename__ = "commands"
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    kind: Mapped[str] = mapped_column(String(20))  # backup | restore | reindex
    args: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    config_version: Mapped[int] = mapped_column(Integer)
    actor: Mapped[str] = mapped_column(String(320))
    status: Mapped[str] = mapped_column(String(20), default="queued")
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True),
                                                          nullable=True)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class BackupIndex(Base):
    """One manifest seen by an agent (the ``list --json`` fields + ``agent``)."""

    __tablename__ = "backups"
    __table_args__ = (UniqueConstraint("agent_id", "backup_id", "target"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"))
    agent_id: Mapped[int] = mapped_column(ForeignKey("agents.id"))
    backup_id: Mapped[str] = mapped_column(String(64))
    job: Mapped[str] = mapped_column(String(200))
    target: Mapped[str] = mapped_column(String(200))
    finished_at: Mapped[str | None] = mapped_column(String(40), nullable=True)
    summary: Mapped[dict[str, object]] = mapped_column(JSON)


class AuditRecord(Base):
    """One record of an org's hash-chained, append-only audit log (UPDATE and DELETE
    are refused by triggers, see ``migrations``)."""

    __tablename__ = "audit"
    __table_args__ = (UniqueConstraint("org_id", "seq"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"))
    seq: Mapped[int] = mapped_column(Integer)
    at: Mapped[str] = mapped_column(String(40))
    event: Mapped[str] = mapped_column(String(50))
    actor: Mapped[str] = mapped_column(String(320))
    agent: Mapped[str | None] = mapped_column(String(200), nullable=True)
    job: Mapped[str | None] = mapped_column(String(200), nullable=True)
    backup_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    detail: Mapped[dict[str, object]] = mapped_column(JSON, default=dict)
    signature: Mapped[str | None] = mapped_column(Text, nullable=True)
    prev: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
