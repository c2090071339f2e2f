"""initial schema: orgs, users, sessions, tokens, agents, definitions, commands, the
manifest index and the append-only audit log (UPDATE/DELETE refused by triggers).

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = (
    "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
    "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
)
_PG_TRIGGERS = (
    "CREATE FUNCTION dbcrate_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
    "CREATE TRIGGER audit_no_change BEFORE UPDATE OR DELETE ON audit "
    "FOR EACH ROW EXECUTE FUNCTION dbcrate_audit_append_only()",
    "CREATE TRIGGER audit_no_truncate BEFORE TRUNCATE ON audit "
    "FOR EACH STATEMENT EXECUTE FUNCTION dbcrate_audit_append_only()",
)


def _ts() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table("orgs", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("name", sa.String(200), nullable=False, unique=True))
    op.create_table("users", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("email", sa.String(320), nullable=False, unique=True),
                    sa.Column("password_hash", sa.Text, nullable=False),
                    sa.Column("created_at", _ts(), nullable=False))
    op.create_table("memberships",
                    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), primary_key=True),
                    sa.Column("org_id", sa.Integer, sa.ForeignKey("orgs.id"), primary_key=True),
                    sa.Column("role", sa.String(20), nullable=False))
    op.create_table("sessions", sa.Column("id_hash", sa.String(64), primary_key=True),
                    sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
                    sa.Column("org_id", sa.Integer, sa.ForeignKey("orgs.id"), nullable=False),
                    sa.Column("csrf", sa.String(64), nullable=False),
                    sa.Column("expires_at", _ts(), nullable=False))
    op.create_table("tokens", sa.Column("hash", sa.String(64), primary_key=True),
                    sa.Column("kind", sa.String(20), nullable=False),
                    sa.Column("org_id", sa.Integer, sa.ForeignKey("orgs.id"), nullable=False),
                    sa.Column("name", sa.String(200)),
                    sa.Column("expires_at", _ts(), nullable=False),
                    sa.Column("used_at", _ts()))
    op.create_table("agents", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("org_id", sa.Integer, sa.ForeignKey("orgs.id"), nullable=False),
                    sa.Column("name", sa.String(200), nullable=False),
                    sa.Column("key_sha256", sa.String(64), nullable=False),
                    sa.Column("public_key", sa.Text, nullable=False),
                    sa.Column("recipient", sa.String(200), nullable=False),
                    sa.Column("cert_serial", sa.String(64), nullable=False),
                    sa.Column("cert_not_after", _ts(), nullable=False),
                    sa.Column("enrolled_at", _ts(), nullable=False),
                    sa.Column("revoked_at", _ts()),
                    sa.Column("last_seen", _ts()),
                    sa.Column("version", sa.String(50)),
                    sa.Column("can_restore", sa.Boolean, nullable=False),
                    sa.Column("heartbeat", sa.JSON, nullable=False),
                    sa.Column("config_version", sa.Integer, nullable=False),
                    sa.Column("offline_noted", sa.Boolean, nullable=False),
                    sa.Column("audit_seq", sa.Integer, nullable=False),
                    sa.UniqueConstraint("org_id", "name"))
    op.create_table("definitions", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("agent_id", sa.Integer, sa.ForeignKey("agents.id"),
                              nullable=False),
                    sa.Column("kind", sa.String(10), nullable=False),
                    sa.Column("name", sa.String(200), nullable=False),
                    sa.Column("body", sa.JSON, nullable=False),
                    sa.UniqueConstraint("agent_id", "kind", "name"))
    op.create_table("commands", sa.Column("id", sa.String(36), primary_key=True),
                    sa.Column("org_id", sa.Integer, sa.ForeignKey("orgs.id"), nullable=False),
                    sa.Column("agent_id", sa.Integer, sa.ForeignKey("agents.id"),
                              nullable=False),
                    sa.Column("kind", sa.String(20), nullable=False),
                    sa.Column("args", sa.JSON, nullable=False),
                    sa.Column("config_version", sa.Integer, nullable=False),
                    sa.Column("actor", sa.String(320), nullable=False),
                    sa.Column("status", sa.String(20), nullable=False),
                    sa.Column("error", sa.Text),
                    sa.Column("created_at", _ts(), nullable=False),
                    sa.Column("delivered_at", _ts()),
                    sa.Column("finished_at", _ts()))
    op.create_table("backups", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("org_id", sa.Integer, sa.ForeignKey("orgs.id"), nullable=False),
                    sa.Column("agent_id", sa.Integer, sa.ForeignKey("agents.id"),
                              nullable=False),
                    sa.Column("backup_id", sa.String(64), nullable=False),
                    sa.Column("job", sa.String(200), nullable=False),
                    sa.Column("target", sa.String(200), nullable=False),
                    sa.Column("finished_at", sa.String(40)),
                    sa.Column("summary", sa.JSON, nullable=False),
                    sa.UniqueConstraint("agent_id", "backup_id", "target"))
    op.create_table("audit", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("org_id", sa.Integer, sa.ForeignKey("orgs.id"), nullable=False),
                    sa.Column("seq", sa.Integer, nullable=False),
                    sa.Column("at", sa.String(40), nullable=False),
                    sa.Column("event", sa.String(50), nullable=False),
                    sa.Column("actor", sa.String(320), nullable=False),
                    sa.Column("agent", sa.String(200)),
                    sa.Column("job", sa.String(200)),
                    sa.Column("backup_id", sa.String(64)),
                    sa.Column("detail", sa.JSON, nullable=False),
                    sa.Column("signature", sa.Text),
                    sa.Column("prev", sa.String(64), nullable=False),
                    sa.Column("hash", sa.String(64), nullable=False),
                    sa.UniqueConstraint("org_id", "seq"))
    dialect = op.get_bind().dialect.name
    for sql in _PG_TRIGGERS if dialect == "postgresql" else _SQLITE_TRIGGERS:
        op.execute(sql)


def downgrade() -> None:
    raise NotImplementedError("the audit log is append-only: no downgrade drops it")
