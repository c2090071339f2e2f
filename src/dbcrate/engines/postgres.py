"""PostgreSQL: ``pg_dump -Fc -Z0`` to dump (compression is the pipeline's job) and
``pg_restore --single-transaction`` to restore, with tools of the server's major (see
:mod:`dbcrate.engines.pg_tools`); with job option ``globals = true`` also the cluster-wide
objects (:mod:`dbcrate.engines.pg_globals`) as a second part of the backup.

Job options are validated by :class:`dbcrate.engines.pg_options.PgOptions`. The password
reaches the tools as ``PGPASSWORD`` in their environment only. Nothing assumes the server
runs on this host: every tool connects over the job's URL.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

import psycopg
from psycopg import sql

from dbcrate.engines import Connection, Part, RestoreOptions, pg_globals
from dbcrate.engines.pg_options import PgOptions
from dbcrate.engines.pg_stage import staged
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

log = logging.getLogger("dbcrate.postgres")

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


def _major(version: str) -> int | None:
    head = version.split(".")[0]
    return int(head) if head.isdigit() else None


class PostgresEngine:
    """Dump and restore one PostgreSQL database with pg_dump/pg_restore."""

    name = "postgres"
    ext = "pgdump"

    def __init__(self, connection: Connection) -> None:
        """Raises ``ConfigError`` for an unparsable URL or an invalid job option."""
        self._target = PgTarget.parse(connection.url, connection.password)
        self._opts = PgOptions.parse(connection.options)
        self._tools: PgTools | None = None
        self._info: EngineInfo | None = None
        #: the major to restore with, when restoring downwards with ``force``
        self._restore_major: int | None = None

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
        name = self._opts.maintenance_db
        try:
            return self._connect(self._target.with_dbname(name))
        except _MissingDatabase:
            return self._connect(self._target.with_dbname("template1"))

    # -- probe ---------------------------------------------------------------------------

    def _server_version(self, via: PgTarget | None = None) -> tuple[int, str]:
        with self._connect(via) as conn:
            row = conn.execute("SELECT current_setting('server_version_num')::int, (SELECT"
                               " rolsuper FROM pg_roles WHERE rolname = current_user)").fetchone()
        assert row is not None
        self._superuser = bool(row[1])
        num = int(row[0])
        major = num // 10000
        version = f"{major}.{num % 10000}" if major >= 10 else f"{major}.{num // 100 % 100}"
        return major, version

    def _target_version(self) -> tuple[int, str]:
        """The server version, read through the maintenance database if ours is missing."""
        try:
            return self._server_version()
        except _MissingDatabase:
            return self._server_version(self._target.with_dbname(self._opts.maintenance_db))

    def probe(self, via: PgTarget | None = None) -> EngineInfo:
        """Connect, read the server version and resolve pg_dump/pg_restore of its major.
        Raises ``DatabaseUnreachable``, ``AuthenticationFailed``, ``DatabaseError`` (e.g. the
        database does not exist), ``ToolNotFound`` or ``DigestMismatch`` (a cached or
        downloaded binary failed verification). Changes nothing on the server.
        ``via`` (internal) reads the version through another database of the server."""
        major, version = self._server_version(via)
        self._tools = resolve(major, version, self._opts.tool_options())
        log.info("postgresql %s at %s: using pg_dump %s from %s (%s)", version,
                 self._target.where, self._tools.version, self._tools.bin_dir,
                 self._tools.source)
        self._info = EngineInfo(
            engine=self.name,
            server_version=version,
            tool="pg_dump",
            tool_version=self._tools.version,
            database=self._target.dbname,
            superuser=f"role {self._target.params.get('user', '')} has rolsuper"
            if self._superuser else "",
        )
        return self._info

    def _ensure_tools(self) -> PgTools:
        if self._tools is None:
            self.probe()
        assert self._tools is not None
        return self._tools

    def _restore_tools(self) -> PgTools:
        """Tools of the target server's major (of the backup's, when restoring into an
        older major with ``force``: an older pg_restore cannot read a newer archive)."""
        major, version = self._target_version()
        if self._restore_major is not None and self._restore_major > major:
            major, version = self._restore_major, f"{self._restore_major} (the backup's)"
        return resolve(major, version, self._opts.tool_options())

    def _redact(self) -> list[str]:
        return [s for s in (self._target.password, *self._target.secrets.values()) if s]

    # -- dump ----------------------------------------------------------------------------

    def dump(self) -> Iterator[bytes]:
        """Stream ``pg_dump -Fc -Z0`` of the database (probing first if not yet done, on the
        first ``next()``), limited by the job's ``schemas``/``tables`` options. Raises the
        ``probe()`` errors, then ``DumpFailed`` with the tool's stderr tail after EOF if it
        failed. Closing the iterator early kills pg_dump."""
        tools = self._ensure_tools()
        argv = [tools.pg_dump, "-Fc", "-Z0", "--no-password", *self._opts.dump_args(),
                "-d", self._target.tool_conninfo()]
        yield from stream_stdout(argv, self._target.tool_env(), "pg_dump", redact=self._redact())

    def extra_parts(self) -> Sequence[Part]:
        """``(Part("globals", "sql"),)`` with job option ``globals = true``, else none."""
        return (Part("globals", "sql"),) if self._opts.globals else ()

    def dump_part(self, name: str) -> Iterator[bytes]:
        """Stream ``pg_dumpall --globals-only`` (roles, memberships, tablespaces) for part
        ``globals``; ``--no-role-passwords`` where pg_authid is not readable (managed
        services), with a warning. Errors as ``dump``; ``KeyError`` for another part."""
        if name != "globals":
            raise KeyError(name)
        tools = self._ensure_tools()
        argv = [tools.tool("pg_dumpall"), "--globals-only", "--no-password"]
        if not self._can_read_authid():
            log.warning("the user cannot read pg_authid (a managed service?): role passwords "
                        "are left out of the globals of %s", self._target.dbname)
            argv.append("--no-role-passwords")
        argv += ["-l", self._target.dbname, "-d", self._target.tool_conninfo()]
        yield from stream_stdout(argv, self._target.tool_env(), "pg_dumpall",
                                 redact=self._redact())

    def _can_read_authid(self) -> bool:
        with self._connect() as conn:
            row = conn.execute(
                "SELECT has_table_privilege('pg_catalog.pg_authid', 'SELECT')"
            ).fetchone()
        return bool(row and row[0])

    # -- restore -------------------------------------------------------------------------

    def check_restore_target(self, backup: EngineInfo, options: RestoreOptions) -> None:
        """Raise ``RestoreRefused`` if the target server's major is older than the backup's
        (pg_restore does not support that) unless ``options.force``, or if the database is
        not empty (``_check_empty``) unless ``options.clean``. Connection errors as
        ``probe()``. Changes nothing; remembers the backup's major for ``restore``."""
        major, version = self._target_version()
        source = _major(backup.server_version)
        if source is not None and major < source:
            if not options.force:
                raise RestoreRefused(
                    f"the backup is of PostgreSQL {backup.server_version}, the target at "
                    f"{self._target.where} runs the older PostgreSQL {version}; restoring into "
                    "an older major is not supported by pg_restore (the dump may use features "
                    "the older server lacks); nothing was changed",
                    hint=f"restore into a PostgreSQL {source} or newer server, or pass --force "
                    f"to try anyway with pg_restore {source}",
                )
            log.warning("restoring a PostgreSQL %s backup into the older %s (--force)",
                        backup.server_version, version)
            self._restore_major = source
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
        """Restore a ``pg_dump -Fc`` archive from ``chunks`` with pg_restore of the target's
        major (``--clean --if-exists`` when ``options.clean``: the archive's objects are
        dropped and recreated; objects only in the target stay; ``--no-owner`` and
        ``--no-privileges`` as asked).

        With ``options.jobs == 1`` (streamed, ``--single-transaction``) atomic: the database
        is created if missing (and dropped again on any failure); if ``chunks`` raises,
        pg_restore is killed before it can commit and the error propagates unchanged.
        With ``jobs > 1`` see ``_restore_parallel``. Raises ``RestoreRefused`` (target not
        empty, not ``clean``), ``RestoreFailed`` (pg_restore failed, or the database cannot
        be created), the connection errors of ``probe()``, or ``ToolNotFound``."""
        tools = self._restore_tools()
        if options.jobs > 1:
            self._restore_parallel(tools, chunks, options)
            return
        created = self._prepare_target(options.clean)
        argv = [tools.pg_restore, "--single-transaction", *self._restore_args(options),
                "-d", self._target.tool_conninfo()]
        try:
            feed_stdin(argv, self._target.tool_env(), chunks, "pg_restore", redact=self._redact())
        except BaseException as e:
            self._undo(created, e)
            raise

    def _restore_args(self, options: RestoreOptions) -> list[str]:
        args = ["--exit-on-error", "--no-password"]
        if options.clean:
            args += ["--clean", "--if-exists"]
        if options.no_owner:
            args.append("--no-owner")
        if options.no_privileges:
            args.append("--no-privileges")
        return args

    def _prepare_target(self, clean: bool) -> bool:
        """Check an existing database (``_check_empty``) or create it; True if created."""
        if self._database_exists():
            self._check_empty(clean=clean)
            return False
        self._create_database()
        return True

    def _undo(self, created: bool, error: BaseException) -> None:
        if not created:
            return
        try:
            self._drop_database()
        except Exception as drop_error:  # keep the original error; say what is left
            error.add_note(
                f"the database {self._target.dbname} created for this restore could "
                f"not be dropped: {self._target.scrub(str(drop_error))}"
            )

    def _restore_parallel(
        self, tools: PgTools, chunks: Iterable[bytes], options: RestoreOptions
    ) -> None:
        """``pg_restore -j N`` needs a seekable file and cannot run in one transaction: the
        dump is staged in a private temp file (``pg_stage``; removed afterwards, also on
        failure) before the target is touched. A database this restore creates is dropped
        on failure, so the target is left as it was; an existing (empty, or ``clean``)
        database keeps what was restored before the failure, and the error says so."""
        with staged(chunks, under=self._opts.staging_dir) as path:
            created = self._prepare_target(options.clean)
            argv = [tools.pg_restore, f"--jobs={options.jobs}", *self._restore_args(options),
                    "-d", self._target.tool_conninfo(), str(path)]
            try:
                feed_stdin(argv, self._target.tool_env(), (), "pg_restore",
                           redact=self._redact())
            except RestoreFailed as e:
                self._undo(created, e)
                if created:
                    raise
                raise RestoreFailed(
                    e.message.replace(
                        "the target was left as it was",
                        f"a parallel restore cannot run in one transaction: what was restored "
                        f"before the failure remains in database {self._target.dbname}",
                    ),
                    hint="empty the database (or restore again with --clean), or restore "
                    "without --jobs into a new database for an all-or-nothing restore",
                ) from None
            except BaseException as e:
                self._undo(created, e)
                raise

    def restore_part(self, name: str, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        """Apply part ``globals`` with psql through the maintenance database (see
        :mod:`dbcrate.engines.pg_globals`: roles that already exist do not abort it; not
        atomic). Raises ``RestoreFailed``, ``ToolNotFound``, connection errors as ``probe``,
        the errors ``chunks`` raises (before anything is applied), ``KeyError`` for
        another part."""
        if name != "globals":
            raise KeyError(name)
        script = pg_globals.collect(chunks)
        tools = self._restore_tools()
        maint = self._target.with_dbname(self._opts.maintenance_db)
        pg_globals.apply(tools.tool("psql"), maint.tool_conninfo(), maint.tool_env(), script,
                         self._target.where, self._redact())

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
