"""PostgreSQL connections for the engine's own queries: libpq errors mapped to the error
tree (messages never hold the password), and what a database holds."""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING, Any

from dbcrate.engines.postgres.url import PgTarget
from dbcrate.engines.process import child_env, materialized
from dbcrate.errors import AuthenticationFailed, DatabaseError, DatabaseUnreachable

if TYPE_CHECKING:  # loaded by ``connect``: importing this module for its errors is free
    import psycopg

_AUTH_MARKERS = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "pg_hba.conf",
    "scram",
    'role "',
)
#: the server's version and whether the role is a superuser (the engine's probe)
VERSION_QUERY = ("SELECT current_setting('server_version_num')::int, "
                 "(SELECT rolsuper FROM pg_roles WHERE rolname = current_user)")
_CONTENT_QUERY = r"""
WITH user_ns AS (
    SELECT oid FROM pg_namespace
    WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\_%'
)
SELECT
  (SELECT count(*) FROM pg_class WHERE relnamespace IN (SELECT oid FROM user_ns)
     AND relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')),
  (SELECT count(*) FROM pg_proc WHERE pronamespace IN (SELECT oid FROM user_ns)),
  (SELECT count(*) FROM pg_type t WHERE typnamespace IN (SELECT oid FROM user_ns)
     AND typrelid = 0 AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)),
  (SELECT count(*) FROM pg_largeobject_metadata),
  (SELECT count(*) FROM pg_extension WHERE extname <> 'plpgsql'),
  (SELECT count(*) FROM pg_namespace WHERE oid IN (SELECT oid FROM user_ns)
     AND nspname <> 'public')
"""
_CONTENT_NAMES = ("relations", "functions", "types", "large objects", "extensions", "schemas")


class MissingDatabase(DatabaseError):
    """The database named in the URL does not exist (internal: restore creates it)."""


def _reason(text: str) -> str:
    """The useful part of a libpq error: the last ``failed:`` clause, one line."""
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    reason = first.rsplit(" failed: ", 1)[-1]
    return reason.replace("FATAL:  ", "").strip()


def connect(t: PgTarget) -> psycopg.Connection[Any]:
    """An autocommit connection to ``t``. Raises ``DatabaseUnreachable``,
    ``AuthenticationFailed``, ``MissingDatabase`` or ``DatabaseError``."""
    import psycopg

    try:
        return psycopg.connect(t.libpq_conninfo(), autocommit=True)
    except psycopg.Error as e:
        text = t.scrub(str(e))
        reason = _reason(text)
        low = text.lower()
        if f'database "{t.dbname.lower()}" does not exist' in low:
            raise MissingDatabase(
                f"database {t.dbname} does not exist on postgresql at {t.where}",
                hint="check the database name in the job's url, or create the database",
            ) from None
        if any(m in low for m in _AUTH_MARKERS):
            raise AuthenticationFailed(
                f"postgresql at {t.where} rejected user {t.params.get('user', '')!r}: {reason}"
            ) from None
        if "fatal:" in low or "error:" in low:
            raise DatabaseError(f"postgresql at {t.where} refused us: {reason}") from None
        raise DatabaseUnreachable(f"cannot connect to postgresql at {t.where}: {reason}") from None


def ask_psql(psql: str | None, target: PgTarget) -> tuple[int, bool] | None:
    """``VERSION_QUERY`` run by ``psql`` with the tools' own connection settings: a backup
    then never loads psycopg (~85 ms and ~25 MiB of its start-up). None when ``psql`` is
    None or fails in any way (unreachable, refused, not a psql); the caller then connects
    itself, whose errors name the cause. Read-only. Raises nothing but ``OSError`` when
    the private service file of ``target``'s secrets cannot be written."""
    if psql is None:
        return None
    argv = [psql, "-XAtq", "--no-password", "-v", "ON_ERROR_STOP=1", "-c", VERSION_QUERY,
            "-d", target.tool_conninfo()]
    with materialized(target.tool_env()) as env:
        try:
            done = subprocess.run(argv, env=child_env(env), capture_output=True, text=True,
                                  timeout=120, check=False, stdin=subprocess.DEVNULL)
        except (OSError, subprocess.SubprocessError):
            return None
    num, _, superuser = done.stdout.strip().partition("|")
    if done.returncode != 0 or not num.isdigit():
        return None
    return int(num), superuser == "t"


def contents(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """The non-zero counts of what the connected database holds (relations, functions,
    types, large objects, extensions other than plpgsql, schemas). Read-only."""
    row = conn.execute(_CONTENT_QUERY.encode()).fetchone()
    assert row is not None
    return {name: int(n) for name, n in zip(_CONTENT_NAMES, row, strict=True) if n}
