"""Creating and dropping the restore target's database: by psql when one is at hand (a
restore then never loads psycopg), else over a psycopg connection to the maintenance
database."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dbcrate.engines.postgres.connect import PSQL_SQL_ERROR, run_psql
from dbcrate.engines.postgres.url import PgTarget
from dbcrate.errors import DatabaseError, RestoreFailed

if TYPE_CHECKING:
    import psycopg

#: a connection to the maintenance database (the engine's ``_maintenance``)
Maintenance = Callable[[], "psycopg.Connection[Any]"]


def quote(name: str) -> str:
    """``name`` as an SQL identifier (what ``psycopg.sql.Identifier`` writes). Pure."""
    return '"' + name.replace('"', '""') + '"'


def create(target: PgTarget, maintenance_db: str, psql: str | None,
           maintenance: Maintenance) -> None:
    """``CREATE DATABASE`` of ``target``'s name through ``maintenance_db`` by ``psql``;
    without one, or when that database cannot be reached, over ``maintenance()`` (which
    finds another). Raises ``RestoreFailed`` naming the server's reason, connection
    errors as ``connect``."""
    name = target.dbname
    refused: str | None = None
    if psql is not None:
        with contextlib.suppress(DatabaseError, OSError, subprocess.SubprocessError):
            done = run_psql(psql, target.with_dbname(maintenance_db),
                            f"CREATE DATABASE {quote(name)}")
            if done.returncode == 0:
                return
            if done.returncode == PSQL_SQL_ERROR:
                refused = done.stderr.strip().removeprefix("ERROR:").strip()
    if refused is None:
        import psycopg
        from psycopg import sql

        try:
            with maintenance() as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return
        except psycopg.Error as e:
            refused = str(e)
    raise RestoreFailed(
        f"cannot create database {name} on postgresql at {target.where}: "
        f"{target.scrub(refused).strip()}",
        hint="create the database yourself, or grant the user CREATEDB",
    )


def drop(target: PgTarget, maintenance: Maintenance) -> None:
    """``DROP DATABASE IF EXISTS … WITH (FORCE)`` of ``target``'s name over
    ``maintenance()``. Raises ``psycopg.Error`` and the connection errors."""
    from psycopg import sql

    with maintenance() as conn, contextlib.closing(conn.cursor()) as cur:
        cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
            sql.Identifier(target.dbname)))
