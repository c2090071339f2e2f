"""Base backups of a whole cluster: ``pg_basebackup -D - -Ft -X fetch`` of the server's
major, streamed (the pipeline compresses and encrypts it; nothing touches the disk).

The archive (``wal-push`` or the agent's stream) holds the WAL a restore replays; the
base also carries the few segments from its start to its stop (``-X fetch``), held for
the backup's duration by a temporary replication slot. With ``-X none`` the server
would wait in ``pg_backup_stop`` for the archiver, looking once a second (at least 1 s
per base); dbcrate waits for the stop segment itself, on every target
(operations/pitr/base.py). Without a free slot it falls back to ``-X none``.

The stream's ``backup_label``, ``backup_manifest`` and ``global/pg_control`` give the
timeline, start/stop LSN, system identifier and versions (``BaseInfo``).
"""

from __future__ import annotations

import functools
import json
import logging
import os
import re
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dbcrate.engines.base import Connection, RestoreOptions, SinglePart
from dbcrate.engines.postgres.connect import connect, psql_row
from dbcrate.engines.postgres.options import PgOptions
from dbcrate.engines.postgres.physical.session import PsqlSession
from dbcrate.engines.postgres.physical.tarscan import TarScan
from dbcrate.engines.postgres.physical.walpage import pg_control_system_identifier
from dbcrate.engines.postgres.tools import PgTools, probe_psql, resolve
from dbcrate.engines.postgres.url import PgTarget
from dbcrate.engines.process import stream_stdout
from dbcrate.errors import DumpFailed, RestoreRefused, ToolNotFound
from dbcrate.model import EngineInfo

if TYPE_CHECKING:
    import psycopg

log = logging.getLogger("dbcrate.postgres.physical")

#: what the tar scan keeps of each member (bytes)
_KEEP = {"backup_label": 1 << 16, "backup_manifest": 1 << 26, "global/pg_control": 64}
_START = re.compile(r"START WAL LOCATION: ([0-9A-F]+/[0-9A-F]+)")
_TIMELINE = re.compile(r"START TIMELINE: (\d+)")
#: the server's version, segment size, the role's privileges and extra tablespaces
_PROBE = ("SELECT current_setting('server_version_num')::int,"
          " (SELECT setting FROM pg_settings WHERE name = 'wal_segment_size')::bigint,"
          " (SELECT rolreplication FROM pg_roles WHERE rolname = current_user),"
          " (SELECT rolsuper FROM pg_roles WHERE rolname = current_user),"
          " coalesce((SELECT string_agg(spcname::text, ',' ORDER BY spcname) FROM pg_tablespace"
          "           WHERE spcname NOT IN ('pg_default', 'pg_global')), '')")


def _no_slot(reason: str) -> None:
    first = (reason.strip().splitlines() or ["the server refused"])[0]
    log.warning("no temporary replication slot for the base backup (%s); taking it with"
                " -X none (the server waits for the archiver)", first)


class BaseBackupRefused(DumpFailed):
    """The cluster cannot be backed up this way (extra tablespaces, no REPLICATION)."""


@dataclass(frozen=True)
class BaseInfo:
    """What a finished base backup is (all from the stream, checked against the server)."""

    timeline: int
    start_lsn: str
    stop_lsn: str
    system_identifier: str
    segment_size: int
    server_version: str
    manifest: bytes

    def extra(self) -> dict[str, str]:
        """The manifest's ``extra`` fields of a ``kind = "base"`` backup (docs/format.md)."""
        return {"timeline": str(self.timeline), "start_lsn": self.start_lsn,
                "stop_lsn": self.stop_lsn, "system_identifier": self.system_identifier,
                "segment_size": str(self.segment_size),
                "pg_version": self.server_version}


class PhysicalEngine(SinglePart):
    """A PostgreSQL cluster backed up with pg_basebackup (an ``Engine`` for backups; its
    restores are operations/pitr's, so ``restore`` refuses)."""

    name = "postgres"
    ext = "tar"

    def __init__(self, connection: Connection) -> None:
        """Raises ``ConfigError`` for an unparsable URL or an invalid job option."""
        self._target = PgTarget.parse(connection.url, connection.password)
        self._opts = PgOptions.parse(connection.options)
        self._tools: PgTools | None = None
        self._scan: TarScan | None = None
        self.segment_size = 0
        self.server_version = ""
        self.major = 0

    def probe(self) -> EngineInfo:
        """Read the server's version, segment size and the role's privileges; resolve
        pg_basebackup of its major. Raises ``BaseBackupRefused`` (extra tablespaces, a
        role without REPLICATION), ``DatabaseError``, ``ToolNotFound``."""
        row = psql_row(self._psql, self._target, _PROBE)
        if row is None or len(row) != 5 or not (row[0].isdigit() and row[1].isdigit()):
            with connect(self._target) as conn:
                got = conn.execute(_PROBE).fetchone()
            assert got is not None
            row = [str(got[0]), str(got[1]), "t" if got[2] else "f", "t" if got[3] else "f",
                   str(got[4])]
        num, seg = int(row[0]), int(row[1])
        repl, superuser = row[2] == "t", row[3] == "t"
        spaces = [n for n in row[4].split(",") if n]
        self.major = num // 10000
        self.server_version = f"{self.major}.{num % 10000}"
        self.segment_size = seg
        user = self._target.params.get("user", "")
        if spaces:
            raise BaseBackupRefused(
                f"the cluster at {self._target.where} has tablespaces besides pg_default "
                f"({', '.join(spaces)}): pg_basebackup -D - cannot carry them",
                hint="move their tables to pg_default, or back this cluster up in "
                'mode = "logical"')
        if not repl and not superuser:
            raise BaseBackupRefused(
                f"role {user!r} at {self._target.where} has no REPLICATION privilege",
                hint=f"ALTER ROLE {user} REPLICATION (and a replication line in pg_hba.conf;"
                " docs/pitr.md)")
        self._tools = resolve(self.major, self.server_version, self._opts.tool_options())
        return EngineInfo(engine="postgres", server_version=self.server_version,
                          tool="pg_basebackup", tool_version=self._tools.version,
                          database="", superuser=f"role {user} has rolsuper"
                          if superuser else "")

    def dump(self) -> Iterator[bytes]:
        """Stream the base backup as one tar. Raises the ``probe()`` errors, then
        ``DumpFailed`` after EOF if pg_basebackup failed. Closing early kills it."""
        if self._tools is None:
            self.probe()
        assert self._tools is not None
        hold = self._hold_wal(self._tools)
        try:
            argv = [self._tools.tool("pg_basebackup"), "-D", "-", "-Ft",
                    "-X", "none" if hold is None else "fetch",
                    "--checkpoint=fast", "--no-password", "-d", self._target.tool_conninfo()]
            self._scan = TarScan(_KEEP)
            redact = [s for s in (self._target.password, *self._target.secrets.values()) if s]
            yield from self._scan(stream_stdout(argv, self._target.tool_env(),
                                                "pg_basebackup", redact=redact))
        finally:
            if hold is not None:
                hold.close()  # the session ends: the temporary slot is dropped

    def _hold_wal(self, tools: PgTools) -> PsqlSession | psycopg.Connection[Any] | None:
        """A session holding a temporary physical slot that reserves WAL from now on (so
        ``-X fetch`` cannot lose its segments to recycling however long the backup takes;
        dropped when the session ends, also if dbcrate is killed), or None when no slot
        can be had (``max_replication_slots`` used up, a server that refuses): the backup
        then uses ``-X none``. The session is a psql process (``PsqlSession``) when a psql
        is at hand, else a psycopg connection. Never raises for the slot; raises
        ``DatabaseError`` when the server cannot be reached."""
        name = f"dbcrate_base_{os.getpid()}_{secrets.token_hex(4)}"
        query = f"SELECT pg_create_physical_replication_slot('{name}', true, true)"
        try:
            psql: str | None = tools.tool("psql")
        except ToolNotFound:
            psql = None
        if psql is not None:
            try:
                session = PsqlSession(psql, self._target)
            except OSError:
                pass
            else:
                if session.row(query) is not None:
                    return session
                _no_slot(session.error)
                return None
        import psycopg

        conn = connect(self._target)
        try:
            conn.execute(query.encode())
        except psycopg.Error as exc:  # no free slot, a server that refuses
            conn.close()
            _no_slot(str(exc))
            return None
        return conn

    @functools.cached_property
    def _psql(self) -> str | None:
        """The psql that asks the server before its major is known (``probe_psql``)."""
        return probe_psql(self._opts.tool_options())

    def base_info(self) -> BaseInfo:
        """The finished backup's metadata. Raises ``DumpFailed`` if the stream lacked
        ``backup_label``, ``backup_manifest`` or ``global/pg_control``."""
        scan = self._scan
        members = scan.members if scan is not None else {}
        for name in ("backup_label", "backup_manifest", "global/pg_control"):
            if name not in members:
                raise DumpFailed(f"pg_basebackup's stream has no {name}",
                                 hint="is the server PostgreSQL 13 or newer?")
        label = members["backup_label"].decode("utf-8", "replace")
        start, tli = _START.search(label), _TIMELINE.search(label)
        try:
            doc: Any = json.loads(members["backup_manifest"])
            ranges = doc["WAL-Ranges"]
            stop = str(ranges[-1]["End-LSN"])
        except (ValueError, KeyError, IndexError, TypeError):
            raise DumpFailed("pg_basebackup's backup_manifest has no WAL range") from None
        sysid = pg_control_system_identifier(members["global/pg_control"])
        if start is None or tli is None or sysid is None:
            raise DumpFailed("pg_basebackup's backup_label has no start location")
        return BaseInfo(timeline=int(tli.group(1)), start_lsn=start.group(1), stop_lsn=stop,
                        system_identifier=str(sysid), segment_size=self.segment_size,
                        server_version=self.server_version, manifest=members["backup_manifest"])

    # -- the rest of the Engine protocol ---------------------------------------------------

    def check_restore_target(self, backup: EngineInfo, options: RestoreOptions) -> None:
        raise RestoreRefused("a base backup restores with `dbcrate restore JOB --pitr`",
                             hint="see docs/pitr.md")

    def restore(self, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        raise RestoreRefused("a base backup restores with `dbcrate restore JOB --pitr`",
                             hint="see docs/pitr.md")

