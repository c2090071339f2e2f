"""What a server says about its archiving (``dbcrate wal check``), over the job's URL."""

from __future__ import annotations

from dataclasses import dataclass

import psycopg

from dbcrate.engines.base import Connection
from dbcrate.engines.postgres.connect import connect
from dbcrate.engines.postgres.url import PgTarget


@dataclass(frozen=True)
class ArchiveSettings:
    wal_level: str
    archive_mode: str
    archive_command: str
    replication: bool
    current_segment: str


def read_settings(connection: Connection) -> ArchiveSettings:
    """Read the archiving settings and the current segment. Raises ``DatabaseError``."""
    target = PgTarget.parse(connection.url, connection.password)
    with connect(target) as conn:
        row = conn.execute(
            "SELECT current_setting('wal_level'), current_setting('archive_mode'),"
            " current_setting('archive_command'),"
            " (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user),"
            " pg_walfile_name(pg_current_wal_lsn())").fetchone()
    assert row is not None
    return ArchiveSettings(str(row[0]), str(row[1]), str(row[2]), bool(row[3]), str(row[4]))


def current_segment(connection: Connection) -> str | None:
    """The server's current segment name, or None if it cannot be asked."""
    try:
        return read_settings(connection).current_segment
    except Exception:  # unreachable, a standby, no privilege: verify goes on without it
        return None


def switch_segment(connection: Connection) -> str:
    """``pg_switch_wal()``: the name of the segment just closed. Raises ``DatabaseError``
    (naming the GRANT it needs when the role may not)."""
    from dbcrate.errors import DatabaseError

    target = PgTarget.parse(connection.url, connection.password)
    with connect(target) as conn:
        try:
            row = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()
        except psycopg.errors.InsufficientPrivilege:
            user = target.params.get("user", "")
            raise DatabaseError(f"role {user!r} may not switch WAL segments",
                                hint=f"GRANT EXECUTE ON FUNCTION pg_switch_wal() TO {user}"
                                ) from None
    assert row is not None
    return str(row[0])


def current_lsn(url: str, password: str | None) -> int | None:
    """The server's current WAL write position, or None if it cannot be asked."""
    try:
        with connect(PgTarget.parse(url, password)) as conn:
            row = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()
    except Exception:  # unreachable or a standby: status goes on without it
        return None
    if row is None:
        return None
    hi, _, lo = str(row[0]).partition("/")
    return int(hi, 16) << 32 | int(lo, 16)


def slot_lost(connection: Connection, slot: str) -> bool:
    """Whether replication slot ``slot`` exists and was invalidated (``wal_status =
    'lost'``: the WAL it held back was removed, so the stream has a gap); such a slot is
    dropped, to be created anew. Raises ``DatabaseError``."""
    target = PgTarget.parse(connection.url, connection.password)
    with connect(target) as conn:
        row = conn.execute("SELECT wal_status FROM pg_replication_slots WHERE slot_name = %s",
                           (slot,)).fetchone()
        if row is None or row[0] != "lost":
            return False
        conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
    return True


def ensure_slot(connection: Connection, slot: str) -> None:
    """Create physical replication slot ``slot`` if missing, holding WAL from the moment it
    is made (``immediately_reserve``; ``pg_receivewal --create-slot`` does not reserve, so
    until its first status report the slot would hold nothing). An inactive slot that holds
    nothing yet (``restart_lsn`` null) is made anew the same way. Not atomic with a
    concurrent creator: one that wins the race is accepted. Raises ``DatabaseError``."""
    from dbcrate.errors import DatabaseError

    target = PgTarget.parse(connection.url, connection.password)
    with connect(target) as conn:
        try:
            row = conn.execute("SELECT active, restart_lsn IS NULL FROM pg_replication_slots "
                               "WHERE slot_name = %s", (slot,)).fetchone()
            if row is not None and (row[0] or not row[1]):  # in use, or holding WAL
                return
            if row is not None:
                conn.execute("SELECT pg_drop_replication_slot(%s)", (slot,))
            conn.execute("SELECT pg_create_physical_replication_slot(%s, true)", (slot,))
        except psycopg.errors.DuplicateObject:
            return
        except psycopg.errors.InsufficientPrivilege:
            user = target.params.get("user", "")
            raise DatabaseError(f"role {user!r} may not create replication slot {slot}",
                                hint=f"ALTER ROLE {user} REPLICATION") from None
        except psycopg.Error as exc:
            raise DatabaseError(f"cannot create replication slot {slot}: "
                                f"{target.scrub(str(exc)).strip()[:300]}") from None
