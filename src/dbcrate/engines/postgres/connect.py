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


def classify(t: PgTarget, text: str) -> DatabaseError:
    """The error for libpq's message ``text`` about ``t`` (from psycopg or psql; the
    password and secrets masked): ``MissingDatabase``, ``AuthenticationFailed``,
    ``DatabaseError`` (the server refused) or ``DatabaseUnreachable``. Pure."""
    text = t.scrub(text.removeprefix("psql: error: "))
    reason = _reason(text)
    low = text.lower()
    if f'database "{t.dbname.lower()}" does not exist' in low:
        return MissingDatabase(
            f"database {t.dbname} does not exist on postgresql at {t.where}",
            hint="check the database name in the job's url, or create the database",
        )
    if any(m in low for m in _AUTH_MARKERS):
        return AuthenticationFailed(
            f"postgresql at {t.where} rejected user {t.params.get('user', '')!r}: {reason}")
    if "fatal:" in low or "error:" in low:
        return DatabaseError(f"postgresql at {t.where} refused us: {reason}")
    return DatabaseUnreachable(f"cannot connect to postgresql at {t.where}: {reason}")


def connect(t: PgTarget) -> psycopg.Connection[Any]:
    """An autocommit connection to ``t``. Raises ``DatabaseUnreachable``,
    ``AuthenticationFailed``, ``MissingDatabase`` or ``DatabaseError`` (``classify``)."""
    import psycopg

    try:
        return psycopg.connect(t.libpq_conninfo(), autocommit=True)
    except psycopg.Error as e:
        raise classify(t, str(e)) from None


#: psql's exit status when the connection failed (or went bad)
PSQL_CONNECTION = 2
#: psql's exit status for an error in the SQL it ran (with ON_ERROR_STOP)
PSQL_SQL_ERROR = 3


def run_psql(psql: str, target: PgTarget, query: str) -> subprocess.CompletedProcess[str]:
    """``psql -XAtq -c query`` on ``target`` with the tools' own connection settings (no
    psycopg: ~85 ms and ~25 MiB of a command's start-up). A failed connection raises
    its ``classify`` error; any other outcome is returned (``returncode`` 0, or
    ``PSQL_SQL_ERROR`` with the server's message on stderr). Raises ``OSError`` when
    psql cannot run or the private service file of ``target``'s secrets cannot be written,
    ``subprocess.TimeoutExpired`` after 120 s."""
    argv = [psql, "-XAtq", "--no-password", "-v", "ON_ERROR_STOP=1", "-c", query,
            "-d", target.tool_conninfo()]
    with materialized(target.tool_env()) as env:
        done = subprocess.run(argv, env=child_env(env), capture_output=True, text=True,
                              timeout=120, check=False, stdin=subprocess.DEVNULL)
    if done.returncode == PSQL_CONNECTION:
        raise classify(target, done.stderr.strip())
    return done


def psql_row(psql: str | None, target: PgTarget, query: str) -> list[str] | None:
    """The first row of ``query`` (``run_psql``), its columns as text. A failed
    connection raises as ``run_psql``; None when ``psql`` is None or anything else goes
    wrong (psql missing or broken, the query failed): the caller then asks over psycopg,
    whose errors name the cause. Read-only for a read-only query."""
    if psql is None:
        return None
    try:
        done = run_psql(psql, target, query)
    except (OSError, subprocess.SubprocessError):
        return None
    if done.returncode != 0 or not done.stdout.strip():
        return None
    return done.stdout.splitlines()[0].split("|")


def ask_psql(psql: str | None, target: PgTarget) -> tuple[int, bool] | None:
    """``VERSION_QUERY`` by ``psql_row``: ``server_version_num`` and ``rolsuper``, or None
    (then the caller connects itself). A failed connection raises as ``run_psql``."""
    row = psql_row(psql, target, VERSION_QUERY)
    if row is None or len(row) != 2 or not row[0].isdigit():
        return None
    return int(row[0]), row[1] == "t"


def exists_query(dbname: str) -> str:
    """``VERSION_QUERY`` and whether database ``dbname`` exists. The name travels as the
    hex of its UTF-8 bytes, so no quoting rule (``standard_conforming_strings``) matters."""
    return (f"{VERSION_QUERY}, EXISTS (SELECT FROM pg_database WHERE datname = "
            f"convert_from(decode('{dbname.encode().hex()}', 'hex'), 'UTF8'))")


def ask_psql_exists(psql: str | None, via: PgTarget,
                    dbname: str) -> tuple[int, bool, bool] | None:
    """``exists_query`` on ``via`` by ``psql_row``: ``server_version_num``, ``rolsuper``
    and whether ``dbname`` exists; None as there. A failed connection raises as
    ``run_psql``. Read-only."""
    row = psql_row(psql, via, exists_query(dbname))
    if row is None or len(row) != 3 or not row[0].isdigit():
        return None
    return int(row[0]), row[1] == "t", row[2] == "t"


def psql_contents(psql: str | None, target: PgTarget) -> dict[str, int] | None:
    """``contents`` asked by ``psql_row``; None as there (not: the database is missing,
    which raises ``MissingDatabase``)."""
    row = psql_row(psql, target, _CONTENT_QUERY)
    if row is None or len(row) != len(_CONTENT_NAMES) or not all(n.isdigit() for n in row):
        return None
    return {name: int(n) for name, n in zip(_CONTENT_NAMES, row, strict=True) if int(n)}


def contents(conn: psycopg.Connection[Any]) -> dict[str, int]:
    """The non-zero counts of what the connected database holds (relations, functions,
    types, large objects, extensions other than plpgsql, schemas). Read-only."""
    row = conn.execute(_CONTENT_QUERY.encode()).fetchone()
    assert row is not None
    return {name: int(n) for name, n in zip(_CONTENT_NAMES, row, strict=True) if n}
