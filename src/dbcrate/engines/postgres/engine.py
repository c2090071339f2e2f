"""PostgreSQL: ``pg_dump -Fc -Z0`` to dump (compression is the pipeline's job) and
``pg_restore --single-transaction`` to restore, with tools of the server's major (see
:mod:`dbcrate.engines.postgres.tools`); with job option ``globals = true`` also the cluster-wide
objects (:mod:`dbcrate.engines.postgres.cluster`) as a second part of the backup.

Job options are validated by :class:`dbcrate.engines.pg_options.PgOptions`. The password
reaches the tools as ``PGPASSWORD`` in their environment only. Nothing assumes the server
runs on this host: every tool connects over the job's URL.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

from dbcrate import interrupt
from dbcrate.engines.base import Connection, Part, RestoreOptions
from dbcrate.engines.postgres import database as pg_database
from dbcrate.engines.postgres.connect import (
    MissingDatabase,
    connect,
    contents,
    psql_contents,
)
from dbcrate.engines.postgres.options import PgOptions
from dbcrate.engines.postgres.probe import ServerProbe
from dbcrate.engines.postgres.staging import staged
from dbcrate.engines.postgres.tools import PgTools, resolve
from dbcrate.engines.postgres.url import PgTarget
from dbcrate.engines.process import feed_stdin, stream_stdout
from dbcrate.errors import RestoreFailed, RestoreRefused
from dbcrate.model import EngineInfo

if TYPE_CHECKING:  # psycopg (~85 ms, ~25 MiB) loads only when a connection is opened
    import psycopg

log = logging.getLogger("dbcrate.postgres")

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
        #: the server's version and the target's existence, each asked once
        self._probe = ServerProbe(self._target, self._opts)

    snapshot: str | None = None  #: ``pg_dump --snapshot`` (count_rows: snapshot.py)

    def session(self) -> psycopg.Connection[Any]:
        """An autocommit connection to the job's database (errors as ``_connect``)."""
        return self._connect()

    @property
    def dumps_large_objects(self) -> bool:  # no schema/table filter
        return not (self._opts.schemas or self._opts.tables)

    # -- connections ---------------------------------------------------------------------

    def _connect(self, target: PgTarget | None = None) -> psycopg.Connection[Any]:
        """An autocommit connection (errors as :func:`pg_connect.connect`)."""
        return connect(target or self._target)

    def _maintenance(self) -> psycopg.Connection[Any]:
        """A connection to the maintenance database (``template1`` if it is missing or is
        the target itself, which a swap renames)."""
        name = self._opts.maintenance_db
        if name != self._target.dbname:
            with contextlib.suppress(MissingDatabase):
                return self._connect(self._target.with_dbname(name))
        fallback = "template1" if self._target.dbname != "template1" else "postgres"
        return self._connect(self._target.with_dbname(fallback))

    # -- probe ---------------------------------------------------------------------------

    def probe(self, via: PgTarget | None = None) -> EngineInfo:
        """Connect, read the server version and resolve pg_dump/pg_restore of its major.
        Raises ``DatabaseUnreachable``, ``AuthenticationFailed``, ``DatabaseError`` (e.g. the
        database does not exist), ``ToolNotFound`` or ``DigestMismatch`` (a cached or
        downloaded binary failed verification). Changes nothing on the server.
        ``via`` (internal) reads the version through another database of the server."""
        major, version = self._probe.server_version(via)
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
            if self._probe.superuser else "",
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
        major, version = self._probe.target_version()
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
                *([f"--snapshot={self.snapshot}"] if self.snapshot else []),
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
        (pg_restore does not support that) unless ``options.force``; if the database is
        not empty (``_contents``) unless ``options.clean``; or if a restore over it (an
        atomic swap, see :mod:`dbcrate.engines.postgres.swap`) would find other sessions on it
        and ``options.terminate_sessions`` is false. Connection errors as ``probe()``.
        Changes nothing; remembers the backup's major for ``restore``."""
        major, version = self._probe.target_version()
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
        if self._plan(options) == "swap" and not options.terminate_sessions:
            from dbcrate.engines.postgres import swap as pg_swap

            with self._maintenance() as conn:
                found = pg_swap.sessions(conn, self._target.dbname)
            if found:
                raise pg_swap.refuse_sessions(found, self._target.dbname, self._target.where)

    def _contents(self) -> dict[str, int] | None:
        """What the database holds (relations, functions, types, large objects, extensions
        other than plpgsql, schemas; only the non-zero counts), None if it does not exist.
        Raises the connection errors as ``DatabaseError`` subclasses. Read-only."""
        if self._probe.missing:
            return None
        try:
            counts = psql_contents(self._probe.psql, self._target)
            if counts is not None:
                return counts
            conn = self._connect()
        except MissingDatabase:
            return None
        with conn:
            return contents(conn)

    def _plan(self, options: RestoreOptions) -> str:
        """``create`` (no such database), ``into`` (an empty one, restored in one
        transaction) or ``swap`` (a non-empty one with ``clean``, or any existing one with
        ``jobs > 1``: restored into a sibling, then swapped). Raises ``RestoreRefused`` for
        a non-empty database without ``clean``. Read-only."""
        counts = self._contents()
        if counts is None:
            return "create"
        if counts and not options.clean:
            what = ", ".join(f"{n} {name}" for name, n in counts.items())
            raise RestoreRefused(
                f"database {self._target.dbname} on postgresql at {self._target.where} "
                f"is not empty ({what}); nothing was changed"
            )
        return "swap" if counts or options.jobs > 1 else "into"

    def restore(self, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        """Restore a ``pg_dump -Fc`` archive from ``chunks`` with pg_restore of the target's
        major (``--no-owner``/``--no-privileges`` as asked). Atomic in every case: the
        target is either unchanged or fully replaced, and if ``chunks`` raises (a digest
        or decryption failure, an interrupt) the error propagates unchanged.

        - No such database: it is created, restored (``--single-transaction``, or
          ``--jobs N`` from a private staged file) and dropped again on any failure.
        - An empty database, ``jobs == 1``: restored in one transaction, rolled back on
          failure.
        - A non-empty database with ``options.clean``, or an existing one with ``jobs > 1``:
          restored into a new sibling database created like it, then swapped in by renaming
          (see :mod:`dbcrate.engines.postgres.swap`); any failure before the swap drops the
          sibling and leaves the original untouched.

        Raises ``RestoreRefused`` (not empty without ``clean``; other sessions without
        ``terminate_sessions``), ``RestoreFailed`` (pg_restore failed, a database cannot
        be created or renamed), the connection errors of ``probe()``, or ``ToolNotFound``."""
        tools = self._restore_tools()
        if options.jobs > 1:
            # pg_restore -j needs a seekable file: staged before the target is touched
            with staged(chunks, under=self._opts.staging_dir) as path:
                self._restore_planned(tools, (), options, str(path))
            return
        self._restore_planned(tools, chunks, options, None)

    def _restore_planned(self, tools: PgTools, chunks: Iterable[bytes],
                         options: RestoreOptions, path: str | None) -> None:
        plan = self._plan(options)
        if plan == "swap":
            self._restore_swap(tools, chunks, options, path)
            return
        created = plan == "create"
        if created:
            self._create_database()
        try:
            self._pg_restore(tools, chunks, options, path, self._target)
        except BaseException as e:
            self._undo(created, e)
            raise

    def _pg_restore(self, tools: PgTools, chunks: Iterable[bytes], options: RestoreOptions,
                    path: str | None, into: PgTarget) -> None:
        """Run pg_restore into ``into``: from ``chunks`` in one transaction, or ``--jobs``
        from the staged file ``path``. Raises ``RestoreFailed`` or what ``chunks`` raises."""
        mode = "--single-transaction" if path is None else f"--jobs={options.jobs}"
        argv = [tools.pg_restore, mode, *self._restore_args(options),
                "-d", into.tool_conninfo(), *([path] if path else [])]
        feed_stdin(argv, into.tool_env(), chunks, "pg_restore", redact=self._redact())

    def _restore_swap(self, tools: PgTools, chunks: Iterable[bytes],
                      options: RestoreOptions, path: str | None) -> None:
        """Restore into a sibling of the target, then swap it in (see ``restore``)."""
        import psycopg

        from dbcrate.engines.postgres import dbentries as pg_dbentries
        from dbcrate.engines.postgres import swap as pg_swap

        db, where = self._target.dbname, self._target.where
        new, old = pg_swap.sibling_names(db)
        with self._maintenance() as conn:
            attrs = pg_swap.read_attributes(conn, db, where)
            if not options.terminate_sessions and (found := pg_swap.sessions(conn, db)):
                raise pg_swap.refuse_sessions(found, db, where)
            if stale := pg_swap.leftovers(conn, db):
                log.warning("found %s, left by an earlier restore that was killed; drop "
                            "them by hand once you are sure no restore is running",
                            ", ".join(stale))
        log.info("restoring into %s, to be swapped in as %s", new, db)
        try:
            with self._maintenance() as conn:
                pg_swap.create_like(conn, new, attrs, where)
            prefix = pg_dbentries.Prefix(chunks)  # the archive's TOC, for its db entries
            try:
                self._pg_restore(tools, prefix, options, path, self._target.with_dbname(new))
            except RestoreFailed as e:
                raise RestoreFailed(
                    e.message.replace("the target was left as it was",
                                      f"it restored into the new database {new}, which was "
                                      f"dropped: {db} was not changed"),
                    hint="fix what pg_restore reports above (e.g. a missing role: restore "
                    "with --no-owner or --globals), then restore again",
                ) from None
            with self._maintenance() as conn:
                if warning := pg_dbentries.carry_over(
                        conn, tools.pg_restore, self._target.tool_env(), new, attrs, path=path,
                        prefix=bytes(prefix.data)):
                    log.warning("%s", self._target.scrub(warning))
                pg_swap.swap(conn, db, new, old, attrs,
                             terminate=options.terminate_sessions, where=where)
        except psycopg.Error as e:
            error = RestoreFailed(
                f"cannot swap the restored copy {new} in for database {db} on postgresql at "
                f"{where}: {self._target.scrub(str(e)).strip()}; the copy was dropped and "
                f"{db} was not changed",
                hint="renaming needs ownership of both databases (or superuser); read the "
                "server's error above",
            )
            self._drop_sibling(new, error)
            raise error from None
        except BaseException as e:
            self._drop_sibling(new, e)
            raise
        with self._maintenance() as conn:
            warning = pg_swap.finish(conn, db, old, attrs, keep_old=options.keep_old)
        if warning:
            log.warning("%s", self._target.scrub(warning))
        elif options.keep_old:
            log.warning("the previous database %s was kept as %s (--keep-old)", db, old)

    def _drop_sibling(self, name: str, error: BaseException) -> None:
        from dbcrate.engines.postgres import swap as pg_swap

        try:
            with self._maintenance() as conn:
                pg_swap.drop(conn, name)
            interrupt.note_removed(f"unfinished database {name}")
        except Exception as drop_error:  # keep the original error; say what is left
            error.add_note(f"the unfinished copy {name} could not be dropped: "
                           f"{self._target.scrub(str(drop_error))}")

    def _restore_args(self, options: RestoreOptions) -> list[str]:
        args = ["--exit-on-error", "--no-password"]
        if options.clean:  # into a fresh database: only drops what a dump may re-create
            args += ["--clean", "--if-exists"]
        if options.no_owner:
            args.append("--no-owner")
        if options.no_privileges:
            args.append("--no-privileges")
        return args

    def _undo(self, created: bool, error: BaseException) -> None:
        if not created:
            return
        try:
            self._drop_database()
            interrupt.note_removed(f"database {self._target.dbname} created for this restore")
        except Exception as drop_error:  # keep the original error; say what is left
            error.add_note(
                f"the database {self._target.dbname} created for this restore could "
                f"not be dropped: {self._target.scrub(str(drop_error))}"
            )

    def restore_part(self, name: str, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        """Apply part ``globals`` with psql through the maintenance database (see
        :mod:`dbcrate.engines.postgres.cluster`: roles that already exist do not abort it; not
        atomic). Raises ``RestoreFailed``, ``ToolNotFound``, connection errors as ``probe``,
        the errors ``chunks`` raises (before anything is applied), ``KeyError`` for
        another part."""
        from dbcrate.engines.postgres import cluster as pg_globals

        if name != "globals":
            raise KeyError(name)
        script = pg_globals.collect(chunks)
        tools = self._restore_tools()
        maint = self._target.with_dbname(self._opts.maintenance_db)
        pg_globals.apply(tools.tool("psql"), maint.tool_conninfo(), maint.tool_env(), script,
                         self._target.where, self._redact())

    def _create_database(self) -> None:
        """``database.create`` of the target (errors as there)."""
        self._probe.missing = False  # from here on it may exist: ask again
        pg_database.create(self._target, self._opts.maintenance_db, self._probe.psql,
                           self._maintenance)

    def _drop_database(self) -> None:
        pg_database.drop(self._target, self._maintenance)
