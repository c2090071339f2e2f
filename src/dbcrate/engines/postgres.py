"""PostgreSQL: ``pg_dump -Fc -Z0`` to dump (compression is the pipeline's job) and
``pg_restore --single-transaction`` to restore, with tools of the server's major.

Connection options (``Connection.options``): ``pg_bin_dir`` (use these tools),
``fetch_tools`` (default true: download verified binaries when none are installed),
``cache_dir`` (pgbin cache), ``maintenance_db`` (default ``postgres``: where CREATE/DROP
DATABASE run). The password reaches the tools as ``PGPASSWORD`` in their environment only.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator
from typing import Any

import psycopg
from psycopg import sql

from dbcrate.engines import Connection, RestoreOptions, SinglePart
from dbcrate.engines.pg_tools import PgTools, resolve
from dbcrate.engines.pg_url import PgTarget
from dbcrate.engines.process import feed_stdin, stream_stdout
from dbcrate.errors import (
    AuthenticationFailed,
    DatabaseError,
    DatabaseUnreachable,
    RestoreFailed,
    RestoreRefused,
)
from dbcrate.model import EngineInfo

_AUTH_MARKERS = (
    "password authentication failed",
    "no password supplied",
    "authentication failed",
    "pg_hba.conf",
    "scram",
    'role "',
)
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


class _MissingDatabase(DatabaseError):
    """The database named in the URL does not exist (internal: restore creates it)."""


def _reason(text: str) -> str:
    """The useful part of a libpq error: the last ``failed:`` clause, one line."""
    first = text.strip().splitlines()[0] if text.strip() else "unknown error"
    reason = first.rsplit(" failed: ", 1)[-1]
    return reason.replace("FATAL:  ", "").strip()


class PostgresEngine(SinglePart):
    """Dump and restore one PostgreSQL database with pg_dump/pg_restore."""

    name = "postgres"
    ext = "pgdump"

    def __init__(self, connection: Connection) -> None:
        self._target = PgTarget.parse(connection.url, connection.password)
        self._options = dict(connection.options)
        self._tools: PgTools | None = None
        self._info: EngineInfo | None = None

    # -- connections ---------------------------------------------------------------------

    def _connect(self, target: PgTarget | None = None) -> psycopg.Connection[Any]:
        """An autocommit connection. Raises ``DatabaseUnreachable``, ``AuthenticationFailed``,
        ``_MissingDatabase`` or ``DatabaseError``; messages never hold the password."""
        t = target or self._target
        try:
            return psycopg.connect(t.libpq_conninfo(), autocommit=True)
        except psycopg.Error as e:
            text = t.scrub(str(e))
            reason = _reason(text)
            low = text.lower()
            if f'database "{t.dbname.lower()}" does not exist' in low:
                raise _MissingDatabase(
                    f"database {t.dbname} does not exist on postgresql at {t.where}",
                    hint="check the database name in the job's url, or create the database",
                ) from None
            if any(m in low for m in _AUTH_MARKERS):
                raise AuthenticationFailed(
                    f"postgresql at {t.where} rejected user {t.params.get('user', '')!r}: {reason}"
                ) from None
            if "fatal:" in low or "error:" in low:
                raise DatabaseError(f"postgresql at {t.where} refused us: {reason}") from None
            raise DatabaseUnreachable(
                f"cannot connect to postgresql at {t.where}: {reason}"
            ) from None

    def _database_exists(self) -> bool:
        try:
            with self._connect():
                return True
        except _MissingDatabase:
            return False

    def _maintenance(self) -> psycopg.Connection[Any]:
        name = str(self._options.get("maintenance_db") or "postgres")
        try:
            return self._connect(self._target.with_dbname(name))
        except _MissingDatabase:
            return self._connect(self._target.with_dbname("template1"))

    # -- probe ---------------------------------------------------------------------------

    def probe(self, via: PgTarget | None = None) -> EngineInfo:
        """Connect, read the server version and resolve pg_dump/pg_restore of its major.
        Raises ``DatabaseUnreachable``, ``AuthenticationFailed``, ``DatabaseError`` (e.g. the
        database does not exist) or ``ToolNotFound``. Changes nothing on the server.
        ``via`` (internal) reads the version through another database of the server."""
        with self._connect(via) as conn:
            row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
        assert row is not None
        num = int(row[0])
        major = num // 10000
        version = f"{major}.{num % 10000}" if major >= 10 else f"{major}.{num // 100 % 100}"
        self._tools = resolve(major, version, self._options)
        self._info = EngineInfo(
            engine=self.name,
            server_version=version,
            tool="pg_dump",
            tool_version=self._tools.version,
            database=self._target.dbname,
        )
        return self._info

    def _ensure_tools(self, *, missing_ok: bool = False) -> PgTools:
        if self._tools is None:
            try:
                self.probe()
            except _MissingDatabase:
                if not missing_ok:
                    raise
                name = str(self._options.get("maintenance_db") or "postgres")
                self.probe(via=self._target.with_dbname(name))
        assert self._tools is not None
        return self._tools

    # -- dump ----------------------------------------------------------------------------

    def dump(self) -> Iterator[bytes]:
        """Stream ``pg_dump -Fc -Z0`` of the database (probing first if not yet done, on the
        first ``next()``). Raises the ``probe()`` errors, then ``DumpFailed`` with the tool's
        stderr tail after EOF if it failed. Closing the iterator early kills pg_dump."""
        tools = self._ensure_tools()
        argv = [tools.pg_dump, "-Fc", "-Z0", "--no-password", "-d", self._target.tool_conninfo()]
        yield from stream_stdout(argv, self._target.tool_env(), "pg_dump", redact=self._redact())

    def _redact(self) -> list[str]:
        return [self._target.password] if self._target.password else []

    # -- restore -------------------------------------------------------------------------

    def check_restore_target(self, backup: EngineInfo, options: RestoreOptions) -> None:
        """See ``Engine.check_restore_target``; the emptiness rule is ``_check_empty``."""
        self._check_empty(clean=options.clean)

    def _check_empty(self, *, clean: bool) -> None:
        """Raise ``RestoreRefused`` if the database exists, holds anything (relations,
        functions, types, large objects, extensions other than plpgsql, schemas) and
        ``clean`` is false. A missing database is fine (restore creates it). Raises the
        connection errors as ``DatabaseError`` subclasses. Read-only."""
        try:
            conn = self._connect()
        except _MissingDatabase:
            return
        with conn:
            row = conn.execute(_CONTENT_QUERY.encode()).fetchone()
        assert row is not None
        counts = {name: int(n) for name, n in zip(_CONTENT_NAMES, row, strict=True) if n}
        if counts and not clean:
            what = ", ".join(f"{n} {name}" for name, n in counts.items())
            raise RestoreRefused(
                f"database {self._target.dbname} on postgresql at {self._target.where} "
                f"is not empty ({what}); nothing was changed"
            )

    def restore(self, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        """Restore a ``pg_dump -Fc`` archive from ``chunks`` with ``pg_restore
        --single-transaction --exit-on-error`` (``--clean --if-exists`` when ``clean``: the
        objects the archive holds are dropped and recreated; objects only in the target stay).

        Atomic: the database is created if missing (and dropped again on any failure); if
        ``chunks`` raises, pg_restore is killed before it can commit and the error
        propagates unchanged. Raises ``RestoreRefused`` (target not empty, not ``clean``),
        ``RestoreFailed`` (pg_restore failed, or the database cannot be created), the
        connection errors of ``probe()``, or ``ToolNotFound``."""
        tools = self._ensure_tools(missing_ok=True)
        created = False
        clean = options.clean
        if self._database_exists():
            self._check_empty(clean=clean)
        else:
            self._create_database()
            created = True
        argv = [tools.pg_restore, "--single-transaction", "--exit-on-error", "--no-password"]
        if clean:
            argv += ["--clean", "--if-exists"]
        argv += ["-d", self._target.tool_conninfo()]
        try:
            feed_stdin(argv, self._target.tool_env(), chunks, "pg_restore", redact=self._redact())
        except BaseException as e:
            if created:
                try:
                    self._drop_database()
                except Exception as drop_error:  # keep the original error; say what is left
                    e.add_note(
                        f"the database {self._target.dbname} created for this restore could "
                        f"not be dropped: {self._target.scrub(str(drop_error))}"
                    )
            raise

    def _create_database(self) -> None:
        name = self._target.dbname
        try:
            with self._maintenance() as conn:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        except psycopg.Error as e:
            raise RestoreFailed(
                f"cannot create database {name} on postgresql at {self._target.where}: "
                f"{self._target.scrub(str(e)).strip()}",
                hint="create the database yourself, or grant the user CREATEDB",
            ) from None

    def _drop_database(self) -> None:
        with self._maintenance() as conn, contextlib.closing(conn.cursor()) as cur:
            cur.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
                    sql.Identifier(self._target.dbname)
                )
            )
