"""The database-level entries a ``pg_dump -Fc`` archive holds (``ALTER DATABASE ... SET``
and ``ALTER ROLE ... IN DATABASE ... SET``, ``GRANT/REVOKE ... ON DATABASE``,
``COMMENT ON DATABASE``), which pg_restore itself applies only with ``--create``.

For an in-place restore they are read from the archive (its header and table of contents
come first, so the first bytes of the stream are enough) and applied to the sibling
database in place of the settings, grants and comment copied from the database it
replaces. The owner, encoding, locale and connection limit stay those of the replaced
database (the backup's may not exist or be valid on the target server).
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import sql

from dbcrate.engines.postgres.swap import DbAttributes
from dbcrate.engines.process import ToolEnv, child_env, materialized

#: how much of the stream is kept to read the table of contents from
PREFIX_LIMIT = 16 << 20
_HEADER = re.compile(r"^-- Name: (.*); Type: (.*); Schema: (.*); Owner: (.*)$")


class Prefix:
    """Pass ``chunks`` through, keeping their first ``limit`` bytes in ``data``."""

    def __init__(self, chunks: Iterable[bytes], limit: int = PREFIX_LIMIT) -> None:
        self._chunks = chunks
        self._limit = limit
        self.data = bytearray()

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._chunks:
            room = self._limit - len(self.data)
            if room > 0:
                self.data += chunk[:room]
            yield chunk


@dataclass
class DbEntries:
    """The archive's database-level statements, already aimed at another database."""

    settings: list[str] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)
    comment: list[str] = field(default_factory=list)


def _sections(script: str) -> Iterator[tuple[str, str, str]]:
    """``(name, type, body)`` of each entry in pg_restore's SQL output."""
    lines = script.splitlines()
    i = 0
    while i < len(lines):
        m = _HEADER.match(lines[i])
        if not m:
            i += 1
            continue
        i += 1
        body: list[str] = []
        while i < len(lines) and not _HEADER.match(lines[i]) and not lines[i].startswith("\\"):
            body.append(lines[i])
            i += 1
        while body and body[-1] in ("", "--"):  # the next entry's header starts with --
            body.pop()
        while body and body[0] in ("", "--"):  # this header's closing --
            body.pop(0)
        yield m.group(1), m.group(2), "\n".join(body).strip()


def _quoted(name: str) -> list[str]:
    return ['"' + name.replace('"', '""') + '"', name]


def parse(script: str, new: str) -> DbEntries | None:
    """The entries of ``script`` (``pg_restore --create --schema-only`` output) with the
    archive's database name replaced by ``new``; None if it has no ``DATABASE`` entry."""
    sections = list(_sections(script))
    names = [name for name, kind, _ in sections if kind == "DATABASE"]
    if not names:
        return None
    target = sql.Identifier(new).as_string(None)
    forms = _quoted(names[0])
    out = DbEntries()

    def aim(body: str, *, first_only: bool) -> str:
        for form in forms:
            pattern = re.compile(r"(\bDATABASE )" + re.escape(form) + r"(?=[ ;])")
            body, n = pattern.subn(lambda m: m.group(1) + target, body,
                                   count=1 if first_only else 0)
            if n:
                break
        return body

    for name, kind, body in sections:
        if kind == "DATABASE PROPERTIES":
            out.settings.append(aim(body, first_only=False))
        elif kind == "ACL" and name.startswith("DATABASE "):
            out.grants.append(aim(body, first_only=False))
        elif kind == "COMMENT" and name.startswith("DATABASE "):
            out.comment.append(aim(body, first_only=True))
    return out


def extract(pg_restore: str, env: ToolEnv, new: str, *, path: str | None = None,
            prefix: bytes = b"") -> DbEntries | None:
    """Read the entries from the archive at ``path`` or its first bytes ``prefix``; None
    if they cannot be read (e.g. the table of contents is larger than the prefix)."""
    argv = [pg_restore, "--create", "--schema-only", "-f", "-", *([path] if path else [])]
    try:
        with materialized(env) as plain:
            proc = subprocess.run(argv, input=b"" if path else prefix, capture_output=True,
                                  env=child_env(plain), timeout=600, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    return parse(proc.stdout.decode("utf-8", "replace"), new)


def apply(conn: psycopg.Connection[Any], new: str, attrs: DbAttributes,
          entries: DbEntries) -> None:
    """In one transaction: reset ``new``'s settings, grants and comment (copied from
    ``attrs``) to the defaults, then run the archive's statements. Atomic; raises
    ``psycopg.Error`` (then ``new`` keeps what was copied)."""
    db = sql.Identifier(new)
    with conn.transaction():
        for role, _ in attrs.settings:
            conn.execute(sql.SQL("ALTER ROLE {} IN DATABASE {} RESET ALL").format(
                sql.Identifier(role), db) if role else
                sql.SQL("ALTER DATABASE {} RESET ALL").format(db))
        if attrs.grants is not None:
            grantees = {g for g, _, _ in attrs.grants} | {"", attrs.owner}
            for grantee in sorted(grantees):
                conn.execute(sql.SQL("REVOKE ALL ON DATABASE {} FROM {} CASCADE").format(
                    db, sql.Identifier(grantee) if grantee else sql.SQL("PUBLIC")))
            conn.execute(sql.SQL("GRANT CONNECT, TEMPORARY ON DATABASE {} TO PUBLIC").format(db))
            conn.execute(sql.SQL("GRANT ALL ON DATABASE {} TO {}").format(
                db, sql.Identifier(attrs.owner)))
        conn.execute(sql.SQL("COMMENT ON DATABASE {} IS NULL").format(db))
        for body in (*entries.settings, *entries.grants, *entries.comment):
            conn.execute(body.encode())


def carry_over(conn: psycopg.Connection[Any], pg_restore: str, env: ToolEnv,
               new: str, attrs: DbAttributes, *, path: str | None, prefix: bytes) -> str | None:
    """Apply the archive's database-level entries to ``new`` (see ``apply``). Returns a
    warning if they cannot be read or applied (``new`` then keeps the settings, grants
    and comment copied from ``attrs``), else None. Never raises ``psycopg.Error``."""
    entries = extract(pg_restore, env, new, path=path, prefix=prefix)
    if entries is None:
        return (f"the backup's database-level entries (settings, grants, comment) could not "
                f"be read; {attrs.name} keeps its own")
    try:
        apply(conn, new, attrs, entries)
    except psycopg.Error as e:
        return (f"the backup's database-level entries (settings, grants, comment) could not "
                f"be applied ({str(e).strip()}); {attrs.name} keeps its own")
    return None
