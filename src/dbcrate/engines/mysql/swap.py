"""Restore over a non-empty MySQL/MariaDB database (``--clean``): the dump goes into a new
sibling schema ``{db}_dbcrate_new_{id}``; only when it loaded completely is it swapped in.

What is atomic: every table (and sequence) of the database is replaced in ONE
``RENAME TABLE`` statement (``db.t -> db.#dbcrate_old_N``, ``sibling.t -> db.t``, ...), so
a session sees either all old or all new tables. What is not: triggers cannot move between
schemas, and views, routines and events are not tables, so they are recreated in the
database from the sibling's definitions right after the table swap (a few statements,
each committed on its own): in that short window a write may run without the new
triggers and a view or routine may be briefly missing. The old tables lose their
triggers in that step and are dropped afterwards, or, with ``keep_old``, moved (data and
indexes, without triggers, views, routines or events) to ``{db}_dbcrate_old_{id}``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dbcrate.errors import DatabaseError, RestoreFailed

Query = Callable[[str], list[list[str]]]
MAX_IDENT = 64
_BASE_TYPES = ("BASE TABLE", "SEQUENCE", "SYSTEM VERSIONED")
_DELIMITER = "//dbcrate//"


def quote_ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def quote_str(value: str) -> str:
    """A string literal immune to sql_mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES)."""
    return f"CONVERT(0x{value.encode().hex()} USING utf8mb4)" if value else "''"


def sibling_names(db: str, short: str | None = None) -> tuple[str, str]:
    """``({db}_dbcrate_new_{id}, {db}_dbcrate_old_{id})`` within 64 characters."""
    short = short or secrets.token_hex(4)
    head = db[: MAX_IDENT - len(f"_dbcrate_new_{short}")]
    return f"{head}_dbcrate_new_{short}", f"{head}_dbcrate_old_{short}"


def unescape(value: str) -> str:
    """A value of the client's ``--batch`` output (``\\n``, ``\\t``, ``\\0``, ``\\\\``)."""
    out, i = [], 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value):
            out.append({"n": "\n", "t": "\t", "0": "\0", "\\": "\\"}.get(value[i + 1],
                                                                       value[i + 1]))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


@dataclass
class Objects:
    """A schema's objects: base tables, views, and the statements recreating the rest."""

    tables: list[str] = field(default_factory=list)
    views: list[str] = field(default_factory=list)
    #: ``(sql_mode, CREATE statement)`` for views, routines, triggers, events, in order
    creates: list[tuple[str, str]] = field(default_factory=list)
    triggers: list[str] = field(default_factory=list)
    routines: list[tuple[str, str]] = field(default_factory=list)
    events: list[str] = field(default_factory=list)


def _rows(query: Query, sql: str) -> list[list[str]]:
    return [[unescape(v) for v in row] for row in query(sql)]


def objects(query: Query, schema: str, *, definitions: bool) -> Objects:
    """What ``schema`` holds; with ``definitions`` also the CREATE statements of its
    views, routines, triggers and events, read with ``schema`` as the default database
    (so they name their objects unqualified). Read-only. Raises as ``query``."""
    s, q = quote_str(schema), quote_ident(schema)
    o = Objects()
    for name, kind in _rows(query, "SELECT TABLE_NAME, TABLE_TYPE FROM "  # noqa: S608
                            f"information_schema.TABLES WHERE TABLE_SCHEMA = {s} ORDER BY 1"):
        (o.tables if kind in _BASE_TYPES else o.views).append(name)
    o.triggers = [r[0] for r in _rows(query, "SELECT TRIGGER_NAME FROM "  # noqa: S608
                  f"information_schema.TRIGGERS WHERE TRIGGER_SCHEMA = {s} "
                  "ORDER BY EVENT_OBJECT_TABLE, ACTION_TIMING, EVENT_MANIPULATION, "
                  "ACTION_ORDER")]
    o.routines = [(r[0], r[1]) for r in _rows(query, "SELECT ROUTINE_TYPE, ROUTINE_NAME "  # noqa: S608
                  f"FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {s} ORDER BY 2")]
    o.events = [r[0] for r in _rows(query, "SELECT EVENT_NAME FROM "  # noqa: S608
                f"information_schema.EVENTS WHERE EVENT_SCHEMA = {s} ORDER BY 1")]
    if not definitions:
        return o
    for kind, name in o.routines:
        [row] = _rows(query, f"USE {q}; SHOW CREATE {kind} {quote_ident(name)}")
        o.creates.append((row[1], row[2]))
    for view in o.views:  # views may use routines; routines and views may be used below
        [row] = _rows(query, f"USE {q}; SHOW CREATE VIEW {quote_ident(view)}")
        o.creates.append(("", row[1]))
    for trigger in o.triggers:
        [row] = _rows(query, f"USE {q}; SHOW CREATE TRIGGER {quote_ident(trigger)}")
        o.creates.append((row[1], row[2]))
    for event in o.events:
        [row] = _rows(query, f"USE {q}; SHOW CREATE EVENT {quote_ident(event)}")
        o.creates.append((row[1], row[3]))
    return o


def _drop_all(db: str, o: Objects, *, tables: Sequence[str] = ()) -> list[str]:
    q = quote_ident(db)
    out = [f"DROP TRIGGER IF EXISTS {q}.{quote_ident(t)}" for t in o.triggers]
    out += [f"DROP VIEW IF EXISTS {q}.{quote_ident(v)}" for v in o.views]
    out += [f"DROP {kind} IF EXISTS {q}.{quote_ident(n)}" for kind, n in o.routines]
    out += [f"DROP EVENT IF EXISTS {q}.{quote_ident(e)}" for e in o.events]
    out += [f"DROP TABLE IF EXISTS {q}.{quote_ident(t)}" for t in tables]
    return out


def swap(query: Query, script: Callable[[str], object], db: str, new: str, old: str, *,
         keep_old: bool) -> None:
    """Swap the loaded sibling ``new`` in for ``db`` (see the module docstring), then drop
    ``new`` and the replaced tables (or keep those in ``old``). ``query`` runs one
    ``-e`` string, ``script`` a script on stdin. Raises as they do; an error before the
    ``RENAME TABLE`` leaves ``db`` as it was."""
    incoming = objects(query, new, definitions=True)
    current = objects(query, db, definitions=False)
    qdb, qnew = quote_ident(db), quote_ident(new)
    # new's triggers must go before its tables can change schema (they are recreated)
    query("; ".join(_drop_all(new, Objects(triggers=incoming.triggers))) or "DO 0")
    moved = [f"{qdb}.{quote_ident(t)} TO {qdb}.{quote_ident(f'#dbcrate_old_{i}')}"
             for i, t in enumerate(current.tables)]
    moved += [f"{qnew}.{quote_ident(t)} TO {qdb}.{quote_ident(t)}" for t in incoming.tables]
    if moved:
        query("RENAME TABLE " + ", ".join(moved))  # the atomic step
    try:
        _finish(query, script, db, new, old, incoming, current, keep_old=keep_old)
    except BaseException as e:
        if not isinstance(e, DatabaseError):
            e.add_note(f"the tables of database {db} were already swapped; the replaced "
                       f"ones may remain in it as `#dbcrate_old_N`")
            raise
        raise RestoreFailed(
            f"the tables of database {db} were replaced by the restored ones, but "
            f"recreating its views, routines, triggers or events failed: {e.message}",
            hint=f"recreate the missing objects by hand (see the backup's dump: dbcrate cat); "
            f"what is left of the copy is in {new}",
        ) from None


def _finish(query: Query, script: Callable[[str], object], db: str, new: str, old: str,
            incoming: Objects, current: Objects, *, keep_old: bool) -> None:
    qdb, qnew = quote_ident(db), quote_ident(new)
    renamed = [f"#dbcrate_old_{i}" for i in range(len(current.tables))]
    statements = [f"USE {qdb}", "SET FOREIGN_KEY_CHECKS = 0",
                  *_drop_all(db, Objects(triggers=current.triggers, views=current.views,
                                         routines=current.routines, events=current.events))]
    for mode, create in incoming.creates:
        statements += [f"SET SESSION sql_mode = {quote_str(mode)}", create]
    # routine bodies hold semicolons: a script on stdin with a delimiter no body has
    script(f"DELIMITER {_DELIMITER}\n" + "".join(f"{st}\n{_DELIMITER}\n" for st in statements))
    _retire(query, db, old, renamed, current.tables, keep_old=keep_old)
    query(f"DROP DATABASE IF EXISTS {qnew}")


def _retire(query: Query, db: str, old: str, renamed: Sequence[str],
            names: Sequence[str], *, keep_old: bool) -> None:
    """Drop the replaced tables (their triggers are gone already), or move them into
    ``old``."""
    if not renamed:
        return
    qdb = quote_ident(db)
    if not keep_old:
        query("SET FOREIGN_KEY_CHECKS = 0; DROP TABLE "
              + ", ".join(f"{qdb}.{quote_ident(t)}" for t in renamed))
        return
    query("; ".join([f"CREATE DATABASE IF NOT EXISTS {quote_ident(old)}",
                     "RENAME TABLE " + ", ".join(
                         f"{qdb}.{quote_ident(r)} TO {quote_ident(old)}.{quote_ident(n)}"
                         for r, n in zip(renamed, names, strict=True))]))
