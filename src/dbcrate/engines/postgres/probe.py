"""What the PostgreSQL engine asks a server before it dumps or restores: the server's
version, whether the role is a superuser and whether the target database exists. Asked
with psql when one is at hand (no psycopg: ~85 ms and ~25 MiB of a command's start-up),
else over a psycopg connection. Read-only."""

from __future__ import annotations

import functools

from dbcrate.engines.postgres.connect import (
    VERSION_QUERY,
    MissingDatabase,
    ask_psql,
    ask_psql_exists,
    connect,
)
from dbcrate.engines.postgres.options import PgOptions
from dbcrate.engines.postgres.tools import prefetch, probe_psql
from dbcrate.engines.postgres.url import PgTarget
from dbcrate.errors import DatabaseError, DatabaseUnreachable


def version_of(num: int) -> tuple[int, str]:
    """The major and version of ``server_version_num`` ``num`` (170011: 17, "17.11")."""
    major = num // 10000
    return major, f"{major}.{num % 10000}" if major >= 10 else f"{major}.{num // 100 % 100}"


class ServerProbe:
    """The questions about one target (``target`` with the job's ``opts``), each asked
    once. ``superuser`` is what the last answer said of the role; ``missing`` whether the
    target database was missing when ``target_version`` asked (a restore then creates it,
    and sets it back to False: from then on it may exist)."""

    def __init__(self, target: PgTarget, opts: PgOptions) -> None:
        self._target = target
        self._opts = opts
        self._known: tuple[int, str] | None = None
        self.superuser = False
        self.missing = False

    @functools.cached_property
    def psql(self) -> str | None:
        """The psql that asks the server before its major is known (``probe_psql``),
        looked up once."""
        return probe_psql(self._opts.tool_options())

    def server_version(self, via: PgTarget | None = None) -> tuple[int, str]:
        """The server's major and version, asked of our database (or ``via``); notes
        ``superuser``. The ``--version`` calls of a configured ``pg_bin_dir`` run beside
        it (``tools.prefetch``). Raises ``DatabaseUnreachable``, ``AuthenticationFailed``,
        ``MissingDatabase`` or ``DatabaseError`` (``connect.classify``)."""
        versions = prefetch(self._opts.tool_options())
        try:
            return self._ask(via)
        finally:
            versions()

    def target_version(self) -> tuple[int, str]:
        """The server version, and whether our database exists (``missing``), asked once:
        through the maintenance database in one psql call (``_through_maintenance``),
        else of our database, or through the maintenance database if ours is missing.
        Raises as ``server_version``."""
        if self._known is None:
            versions = prefetch(self._opts.tool_options())
            try:
                self._known = self._through_maintenance() or self._of_target()
            finally:
                versions()
        return self._known

    def _ask(self, via: PgTarget | None) -> tuple[int, str]:
        asked = ask_psql(self.psql, via or self._target)
        if asked is None:
            with connect(via or self._target) as conn:
                row = conn.execute(VERSION_QUERY).fetchone()
            assert row is not None
            asked = int(row[0]), bool(row[1])
        num, self.superuser = asked
        return version_of(num)

    def _of_target(self) -> tuple[int, str]:
        try:
            return self._ask(None)
        except MissingDatabase:
            self.missing = True
            return self._ask(self._target.with_dbname(self._opts.maintenance_db))

    def _through_maintenance(self) -> tuple[int, str] | None:
        """The version and existence asked by psql through the maintenance database: one
        process and one connection, where asking our database first takes a failed
        connection more when it is missing (a restore into a new database). None when
        there is no psql, the maintenance database is ours, or it cannot be used (missing,
        refused to this role): then ``_of_target`` asks. Raises ``DatabaseUnreachable``
        (no server answers, whichever database)."""
        maintenance = self._opts.maintenance_db
        if self.psql is None or maintenance == self._target.dbname:
            return None
        try:
            asked = ask_psql_exists(self.psql, self._target.with_dbname(maintenance),
                                    self._target.dbname)
        except DatabaseUnreachable:
            raise
        except DatabaseError:
            return None
        if asked is None:
            return None
        num, self.superuser, exists = asked
        self.missing = not exists
        return version_of(num)
