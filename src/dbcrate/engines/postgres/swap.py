"""Atomic in-place restore for PostgreSQL: restore into a new sibling database, then swap
names in one transaction (``ALTER DATABASE ... RENAME`` is transactional).

A restore over an existing database (``--clean``, or ``--jobs`` into an existing one)
goes to ``{db}_dbcrate_new_{id}``, created like the original (owner, encoding, locale and
locale provider, connection limit, default tablespace; then its ``ALTER DATABASE ... SET``
settings, per-role settings, grants and comment). Only after pg_restore succeeded are the
names swapped: ``{db}`` -> ``{db}_dbcrate_old_{id}`` and the sibling -> ``{db}``; then the
old database is dropped (or kept). Every function here works through a maintenance
connection (autocommit) to another database of the same server.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from dbcrate.errors import RestoreFailed, RestoreRefused

#: PostgreSQL's identifier limit (NAMEDATALEN - 1), in bytes
MAX_IDENT = 63
#: settings whose value is a list of (possibly quoted) items, as pg_dump treats them
_LIST_SETTINGS = frozenset({
    "search_path", "temp_tablespaces", "session_preload_libraries",
    "shared_preload_libraries", "local_preload_libraries", "unix_socket_directories",
})
#: how many sessions a refusal names
_NAMED_SESSIONS = 5
_TERMINATE_WAIT_MS = 5000


def sibling_names(db: str, short: str | None = None) -> tuple[str, str]:
    """``({db}_dbcrate_new_{id}, {db}_dbcrate_old_{id})``, the ``db`` part shortened (at a
    character boundary) so that both fit PostgreSQL's 63-byte identifier limit."""
    short = short or secrets.token_hex(4)
    suffix = f"_dbcrate_new_{short}"
    room = MAX_IDENT - len(suffix.encode())
    head = db
    while len(head.encode()) > room:
        head = head[:-1]
    return f"{head}_dbcrate_new_{short}", f"{head}_dbcrate_old_{short}"


@dataclass(frozen=True)
class Session:
    """Another session connected to a database."""

    pid: int
    user: str
    application: str
    client: str

    def describe(self) -> str:
        app = f" application {self.application!r}" if self.application else ""
        client = f" from {self.client}" if self.client else ""
        return f"pid {self.pid} user {self.user or '?'}{app}{client}"


@dataclass(frozen=True)
class DbAttributes:
    """What a database has at database level, read from the catalogs of the live server."""

    name: str
    owner: str
    encoding: str
    row: dict[str, Any]
    tablespace: str
    comment: str | None
    allow_connections: bool
    #: ``(role or "" for every role, ["name=value", ...])``
    settings: Sequence[tuple[str, Sequence[str]]] = ()
    #: ``(grantee or "" for PUBLIC, privilege, grantable)``; None: the default privileges
    grants: Sequence[tuple[str, str, bool]] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def read_attributes(conn: psycopg.Connection[Any], name: str, where: str) -> DbAttributes:
    """The attributes of database ``name`` (all majors: the ``pg_database`` row is read as
    JSON, so columns a major lacks are simply absent). Read-only. Raises ``RestoreFailed``."""
    try:
        return _read_attributes(conn, name)
    except psycopg.Error as e:
        raise RestoreFailed(
            f"cannot read the database-level attributes of {name} on postgresql at {where}: "
            f"{str(e).strip()}; nothing was changed",
            hint="the restoring user must be able to read pg_database and pg_db_role_setting",
        ) from None


def _read_attributes(conn: psycopg.Connection[Any], name: str) -> DbAttributes:
    row = conn.execute(
        "SELECT to_jsonb(d), pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding),"
        " t.spcname, shobj_description(d.oid, 'pg_database'), d.datacl IS NULL"
        " FROM pg_database d JOIN pg_tablespace t ON t.oid = d.dattablespace"
        " WHERE d.datname = %s", (name,)).fetchone()
    if row is None:
        raise RestoreFailed(f"database {name} disappeared during the restore")
    data, owner, encoding, tablespace, comment, default_acl = row
    if isinstance(data, str):
        data = json.loads(data)
    settings = [
        (role or "", list(config or ()))
        for role, config in conn.execute(
            "SELECT CASE WHEN s.setrole = 0 THEN NULL ELSE pg_get_userbyid(s.setrole) END,"
            " s.setconfig FROM pg_db_role_setting s JOIN pg_database d"
            " ON d.oid = s.setdatabase WHERE d.datname = %s ORDER BY 1 NULLS FIRST", (name,))
    ]
    grants = None
    if not default_acl:
        grants = [
            (grantee or "", priv, bool(grantable))
            for grantee, priv, grantable in conn.execute(
                "SELECT CASE WHEN a.grantee = 0 THEN NULL ELSE pg_get_userbyid(a.grantee) END,"
                " a.privilege_type, a.is_grantable"
                " FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = %s"
                " ORDER BY 1 NULLS FIRST, 2", (name,))
        ]
    return DbAttributes(
        name=name, owner=owner, encoding=encoding, row=data, tablespace=tablespace,
        comment=comment, allow_connections=bool(data.get("datallowconn", True)),
        settings=settings, grants=grants,
    )


def _create_options(attrs: DbAttributes) -> list[sql.Composable]:
    """``CREATE DATABASE`` options reproducing ``attrs`` (PostgreSQL 14-18 differ: locale
    provider from 15, ICU rules from 16, ``datlocale``/builtin provider from 17)."""
    row = attrs.row
    opts: list[sql.Composable] = [
        sql.SQL("TEMPLATE = template0"),
        sql.SQL("OWNER = {}").format(sql.Identifier(attrs.owner)),
        sql.SQL("ENCODING = {}").format(sql.Literal(attrs.encoding)),
        sql.SQL("LC_COLLATE = {}").format(sql.Literal(row["datcollate"])),
        sql.SQL("LC_CTYPE = {}").format(sql.Literal(row["datctype"])),
    ]
    provider = {"c": "libc", "i": "icu", "b": "builtin"}.get(row.get("datlocprovider") or "c")
    if "datlocprovider" in row:
        opts.append(sql.SQL("LOCALE_PROVIDER = {}").format(sql.SQL(provider or "libc")))
    locale = row.get("datlocale", row.get("daticulocale"))
    if provider == "icu" and locale:
        opts.append(sql.SQL("ICU_LOCALE = {}").format(sql.Literal(locale)))
        if row.get("daticurules"):
            opts.append(sql.SQL("ICU_RULES = {}").format(sql.Literal(row["daticurules"])))
    elif provider == "builtin" and locale:
        opts.append(sql.SQL("BUILTIN_LOCALE = {}").format(sql.Literal(locale)))
    if attrs.tablespace != "pg_default":
        opts.append(sql.SQL("TABLESPACE = {}").format(sql.Identifier(attrs.tablespace)))
    opts.append(sql.SQL("CONNECTION LIMIT = {}").format(
        sql.Literal(int(row.get("datconnlimit", -1)))))
    return opts


def split_list_setting(value: str) -> list[str]:
    """Items of a list-valued setting as stored (``"$user", public``), unquoted."""
    items: list[str] = []
    i, n = 0, len(value)
    while i < n:
        while i < n and value[i] in " \t":
            i += 1
        item = ""
        if i < n and value[i] == '"':
            i += 1
            while i < n:
                if value[i] == '"':
                    if i + 1 < n and value[i + 1] == '"':
                        item += '"'
                        i += 2
                        continue
                    i += 1
                    break
                item += value[i]
                i += 1
            while i < n and value[i] != ",":
                i += 1
        else:
            start = i
            while i < n and value[i] != ",":
                i += 1
            item = value[start:i].strip()
        items.append(item)
        i += 1  # the comma
    return items


def _set_statement(target: sql.Composable, entry: str) -> sql.Composed:
    name, _, value = entry.partition("=")
    values: sql.Composable = sql.Literal(value)
    if name.lower() in _LIST_SETTINGS:
        values = sql.SQL(", ").join(sql.Literal(v) for v in split_list_setting(value))
    return sql.SQL("{} SET {} TO {}").format(target, sql.Identifier(name), values)


def _statements(attrs: DbAttributes, new: str) -> list[sql.Composed]:
    """Settings, grants and comment of ``attrs`` applied to database ``new``."""
    db = sql.Identifier(new)
    out: list[sql.Composed] = []
    for role, entries in attrs.settings:
        target = (sql.SQL("ALTER ROLE {} IN DATABASE {}").format(sql.Identifier(role), db)
                  if role else sql.SQL("ALTER DATABASE {}").format(db))
        out += [_set_statement(target, e) for e in entries]
    if attrs.grants is not None:
        out.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(db))
        out.append(sql.SQL("REVOKE ALL ON DATABASE {} FROM {}").format(
            db, sql.Identifier(attrs.owner)))
        for grantee, priv, grantable in attrs.grants:
            out.append(sql.SQL("GRANT {} ON DATABASE {} TO {}{}").format(
                sql.SQL(priv), db,
                sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC"),
                sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL("")))
    if attrs.comment is not None:
        out.append(sql.SQL("COMMENT ON DATABASE {} IS {}").format(db, sql.Literal(attrs.comment)))
    return out


def create_like(conn: psycopg.Connection[Any], new: str, attrs: DbAttributes,
                where: str) -> None:
    """Create database ``new`` with the attributes of ``attrs``. Not atomic: the caller
    drops ``new`` on failure. Raises ``RestoreFailed`` naming the statement's error."""
    try:
        conn.execute(sql.SQL("CREATE DATABASE {} WITH {}").format(
            sql.Identifier(new), sql.SQL(" ").join(_create_options(attrs))))
        for stmt in _statements(attrs, new):
            conn.execute(stmt)
    except psycopg.Error as e:
        raise RestoreFailed(
            f"cannot create database {new} like {attrs.name} on postgresql at {where} "
            f"(for an atomic restore over it): {str(e).strip()}; {attrs.name} was not changed",
            hint=f"the restoring user needs CREATEDB and membership in {attrs.owner} (owner of "
            f"{attrs.name}); or restore into a new database with --to",
        ) from None


def sessions(conn: psycopg.Connection[Any], name: str) -> list[Session]:
    """Other sessions connected to database ``name`` (not this one). Read-only."""
    return [
        Session(int(pid), user or "", app or "", str(addr) if addr else "")
        for pid, user, app, addr in conn.execute(
            "SELECT pid, usename, application_name, client_addr FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()"
            # autovacuum workers are not sessions: the rename stops them itself
            " AND backend_type = 'client backend' ORDER BY pid", (name,))
    ]


def leftovers(conn: psycopg.Connection[Any], db: str) -> list[str]:
    """Siblings of ``db`` another restore left (killed before it could drop them)."""
    new, old = (n[:-8] for n in sibling_names(db, "0" * 8))
    return [name for (name,) in conn.execute(
        "SELECT datname FROM pg_database WHERE datname ~ %s ORDER BY 1",
        (f"^({_regex(new)}|{_regex(old)})[0-9a-f]{{8}}$",))]


def _regex(text: str) -> str:
    return "".join(c if c.isalnum() or c == "_" else "\\" + c for c in text)


def refuse_sessions(found: Sequence[Session], name: str, where: str, *,
                    changed: str = "nothing was changed") -> RestoreRefused:
    """The error for other sessions on ``name`` (naming a few of them and the flag)."""
    named = "; ".join(s.describe() for s in found[:_NAMED_SESSIONS])
    more = f"; and {len(found) - _NAMED_SESSIONS} more" if len(found) > _NAMED_SESSIONS else ""
    return RestoreRefused(
        f"database {name} on postgresql at {where} has {len(found)} other session(s) "
        f"connected ({named}{more}); an atomic restore over it swaps databases and needs "
        f"it to itself; {changed}",
        hint="close those sessions, or pass --terminate-sessions to terminate them (and "
        "block new connections) for the swap",
    )


def _allow(conn: psycopg.Connection[Any], name: str, allow: bool) -> None:
    conn.execute(sql.SQL("ALTER DATABASE {} WITH ALLOW_CONNECTIONS {}").format(
        sql.Identifier(name), sql.SQL("true" if allow else "false")))


def swap(conn: psycopg.Connection[Any], db: str, new: str, old: str, attrs: DbAttributes,
         *, terminate: bool, where: str) -> None:
    """Block new connections to ``db``, terminate its sessions if ``terminate`` (else refuse
    if it has any), then in one transaction rename ``db`` -> ``old`` and ``new`` -> ``db``.
    Atomic: on any error nothing is renamed and ``db`` accepts connections again as
    before. Raises ``RestoreRefused`` (sessions, no ``terminate``) or ``RestoreFailed``."""
    blocked = False
    try:
        if attrs.allow_connections:
            _allow(conn, db, False)
            blocked = True
        found = sessions(conn, db)
        if found and not terminate:
            raise refuse_sessions(found, db, where, changed=f"the restored copy was dropped "
                                  f"and {db} was not changed")
        for s in found:
            conn.execute("SELECT pg_terminate_backend(%s, %s)", (s.pid, _TERMINATE_WAIT_MS))
        _wait_gone(conn, db, where)
        with conn.transaction():
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(db), sql.Identifier(old)))
            conn.execute(sql.SQL("ALTER DATABASE {} RENAME TO {}").format(
                sql.Identifier(new), sql.Identifier(db)))
    except BaseException:
        if blocked:
            try:
                _allow(conn, db, True)
            except psycopg.Error:
                pass  # the original error says more; the database itself is untouched
        raise


def _wait_gone(conn: psycopg.Connection[Any], db: str, where: str) -> None:
    """Wait (bounded) until ``db`` has no other sessions. Raises ``RestoreFailed``."""
    deadline = time.monotonic() + _TERMINATE_WAIT_MS / 1000
    while True:
        left = sessions(conn, db)
        if not left:
            return
        if time.monotonic() > deadline:
            raise RestoreFailed(
                f"{len(left)} session(s) on database {db} at {where} did not end after "
                f"termination ({left[0].describe()}); the restored copy was dropped and "
                f"{db} was not changed",
                hint="the restoring user needs pg_signal_backend (or superuser) to "
                "terminate other users' sessions",
            )
        time.sleep(0.1)


def finish(conn: psycopg.Connection[Any], db: str, old: str, attrs: DbAttributes, *,
           keep_old: bool) -> str | None:
    """After a swap: give ``db`` the original's ``ALLOW_CONNECTIONS``, then drop ``old``
    (or, with ``keep_old``, let it accept connections as the original did). Returns a
    warning for what could not be done (the restore itself has succeeded), else None."""
    try:
        if not attrs.allow_connections:
            _allow(conn, db, False)
        if keep_old:
            if attrs.allow_connections:
                _allow(conn, old, True)
            return None
        drop(conn, old)
    except psycopg.Error as e:
        return f"the previous database, now named {old}, could not be dropped: {e}".strip()
    return None


def drop(conn: psycopg.Connection[Any], name: str) -> None:
    """``DROP DATABASE IF EXISTS name WITH (FORCE)``. Raises ``psycopg.Error``."""
    conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(
        sql.Identifier(name)))
