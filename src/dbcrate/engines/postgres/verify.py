"""The PostgreSQL checker of verified restores (docs/verify.md): restore an untrusted
archive into a disposable server with pg_restore running to the end (errors counted, not
fatal), then read what it holds: rows per table, large objects, foreign keys (anti-join,
NOT VALID ones too), ``bt_index_check`` on every B-tree index, and the user's SQL checks
(read-only, with a ``statement_timeout``).

Every function works on a server the caller started and owns; none changes the job's
database (it never connects to it). Results are plain values; the verdict is elsewhere.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql

from dbcrate.engines.postgres.url import PgTarget
from dbcrate.engines.process import feed_stdin
from dbcrate.errors import RestoreFailed

_IGNORED = re.compile(r"errors ignored on restore: (\d+)")


@dataclass(frozen=True)
class Restored:
    """What pg_restore reported: the number of errors it ignored and its stderr tail."""

    errors: int
    detail: str


def restore(pg_restore: str, url: str, password: str, chunks: Iterable[bytes], *,
            owners: bool = False) -> Restored:
    """Run ``pg_restore`` into ``url`` from ``chunks`` to the end (no ``--exit-on-error``),
    with ``--no-owner --no-privileges`` unless ``owners`` (the globals part was applied
    first), and count the errors it ignored. Not atomic (the caller discards the server).
    Raises what ``chunks`` raises (the tool is killed first), ``RestoreFailed`` if it died
    without saying how many errors, ``ToolNotFound``."""
    target = PgTarget.parse(url, password)
    keep = [] if owners else ["--no-owner", "--no-privileges"]
    argv = [pg_restore, *keep, "--no-password", "-d", target.tool_conninfo()]
    try:
        feed_stdin(argv, target.tool_env(), chunks, "pg_restore", redact=[password])
    except RestoreFailed as e:
        found = _IGNORED.search(e.message)
        if found is None:
            raise
        lines = [ln for ln in e.message.splitlines()[1:] if "error" in ln.lower()]
        return Restored(int(found.group(1)), "\n".join(lines[-5:]))
    return Restored(0, "")


def connect(url: str, password: str) -> psycopg.Connection[Any]:
    """An autocommit connection to the disposable server (psycopg errors propagate)."""
    return psycopg.connect(PgTarget.parse(url, password).libpq_conninfo(), autocommit=True,
                           connect_timeout=10)


def row_counts(conn: psycopg.Connection[Any]) -> dict[tuple[str, str], int]:
    """Exact rows of every ordinary and partitioned-leaf table outside the system
    schemas, by (schema, table). Read-only."""
    rows = conn.execute(
        "SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = "
        "c.relnamespace WHERE c.relkind = 'r' AND n.nspname NOT IN ('pg_catalog', "
        "'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 1, 2"
    ).fetchall()
    counts: dict[tuple[str, str], int] = {}
    for schema, table in rows:
        q = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(sql.Identifier(schema),
                                                              sql.Identifier(table))
        row = conn.execute(q).fetchone()
        counts[(schema, table)] = int(row[0]) if row else 0
    return counts


def large_objects(conn: psycopg.Connection[Any]) -> int:
    """How many large objects the database holds. Read-only."""
    row = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
    return int(row[0]) if row else 0


def foreign_keys(conn: psycopg.Connection[Any]) -> tuple[int, list[str]]:
    """(constraints checked, ``"NAME: N orphan rows"`` for each violated one), by an
    anti-join per foreign key (MATCH SIMPLE: a row with a NULL key column is fine), so
    NOT VALID constraints are checked too. Read-only."""
    fks = conn.execute(
        "SELECT con.conname, cn.nspname, cc.relname, pn.nspname, pc.relname, "
        "ARRAY(SELECT a.attname FROM unnest(con.conkey) WITH ORDINALITY k(n, i) JOIN "
        "pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.n ORDER BY k.i), "
        "ARRAY(SELECT a.attname FROM unnest(con.confkey) WITH ORDINALITY k(n, i) JOIN "
        "pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.n ORDER BY k.i) "
        "FROM pg_constraint con JOIN pg_class cc ON cc.oid = con.conrelid "
        "JOIN pg_namespace cn ON cn.oid = cc.relnamespace "
        "JOIN pg_class pc ON pc.oid = con.confrelid "
        "JOIN pg_namespace pn ON pn.oid = pc.relnamespace "
        "WHERE con.contype = 'f' AND con.conparentid = 0 ORDER BY 1"
    ).fetchall()
    bad: list[str] = []
    for name, cs, ct, ps, pt, ccols, pcols in fks:
        notnull = sql.SQL(" AND ").join(
            sql.SQL("c.{} IS NOT NULL").format(sql.Identifier(c)) for c in ccols)
        match = sql.SQL(" AND ").join(
            sql.SQL("p.{} = c.{}").format(sql.Identifier(p), sql.Identifier(c))
            for p, c in zip(pcols, ccols, strict=True))
        q = sql.SQL("SELECT count(*) FROM {}.{} c WHERE {} AND NOT EXISTS "
                    "(SELECT 1 FROM {}.{} p WHERE {})").format(
            sql.Identifier(cs), sql.Identifier(ct), notnull,
            sql.Identifier(ps), sql.Identifier(pt), match)
        row = conn.execute(q).fetchone()
        if row and row[0]:
            bad.append(f"{name}: {row[0]} orphan rows")
    return len(fks), bad


def amcheck(conn: psycopg.Connection[Any]) -> tuple[int, list[str]] | None:
    """``bt_index_check(index, heapallindexed => true)`` on every valid B-tree index of
    the restored tables: (indexes checked, ``"NAME: message"`` per corrupt one), or None
    when the server has no amcheck extension. Creates the extension in the disposable
    database (the only change)."""
    available = conn.execute(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'amcheck'").fetchone()
    if not available:
        return None
    conn.execute("CREATE EXTENSION IF NOT EXISTS amcheck")
    indexes = conn.execute(
        "SELECT c.oid, c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_am am ON am.oid = c.relam JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE am.amname = 'btree' AND c.relkind = 'i' AND i.indisvalid AND i.indisready "
        "AND c.relpersistence <> 't' AND n.nspname NOT IN ('pg_catalog', "
        "'information_schema') AND n.nspname NOT LIKE 'pg_toast%' ORDER BY 2"
    ).fetchall()
    bad: list[str] = []
    for oid, name in indexes:
        try:
            conn.execute("SELECT bt_index_check(%s::regclass, true)", (oid,))
        except psycopg.Error as e:
            bad.append(f"{name}: {str(e).strip()}")
    return len(indexes), bad


def run_query(conn: psycopg.Connection[Any], query: str,
              timeout_ms: int) -> list[tuple[Any, ...]]:
    """Run a user check read-only (``READ ONLY`` transaction, rolled back) with a
    ``statement_timeout``; returns its rows. Raises ``psycopg.Error`` (its message is the
    server's) for a failing, writing or timed-out query."""
    with conn.transaction(force_rollback=True):
        conn.execute("SET TRANSACTION READ ONLY")
        conn.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(
            sql.Literal(timeout_ms)))
        cur = conn.execute(query.encode())
        return list(cur.fetchall()) if cur.description else []



def reset_password(socket_dir: str, port: int, user: str, password: str) -> None:
    """Set ``user``'s password again over the disposable server's unix socket (trust):
    an applied globals part sets the backed-up cluster's passwords, the sandbox's own
    superuser's included. Raises ``psycopg.Error``."""
    with psycopg.connect(host=socket_dir, port=port, user=user, dbname="postgres",
                         autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(user), sql.Literal(password)))
