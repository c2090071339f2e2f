"""MySQL and MariaDB: ``mariadb-dump``/``mysqldump`` to dump one database as SQL, the
``mariadb``/``mysql`` client to restore it, with the tools that match the server.

Job options (``Connection.options``, see docs/engines/mysql.md): ``dump_options`` (list
replacing the default dump flags), ``dump_tool`` and ``client_tool`` (a name or path).
The dump names no database (no ``CREATE DATABASE``/``USE``), so it restores under any
name. Credentials reach every tool through a private defaults file (``mysql_url``).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbcrate import interrupt
from dbcrate.engines.base import Connection, RestoreOptions, SinglePart
from dbcrate.engines.mysql import swap as mysql_swap
from dbcrate.engines.mysql import tools
from dbcrate.engines.mysql.url import MyTarget
from dbcrate.engines.process import child_env, feed_stdin, stream_stdout
from dbcrate.errors import (
    AuthenticationFailed,
    ConfigError,
    DatabaseError,
    DatabaseUnreachable,
    DumpFailed,
    RestoreFailed,
    RestoreRefused,
)
from dbcrate.model import EngineInfo

DEFAULT_DUMP_OPTIONS = (
    "--single-transaction", "--quick", "--routines", "--triggers", "--events", "--hex-blob",
)
#: MySQL's mysqldump only: no GTID_PURGED statement that a restore would trip over
_MYSQL_ONLY_OPTIONS = ("--set-gtid-purged=OFF",)
#: the last line of a complete dump (mysqldump and mariadb-dump, with or without date)
TRAILER = b"-- Dump completed"
_QUERY_TIMEOUT = 120
#: dump_options we refuse (long names without ``--``): they carry credentials or change the
#: connection, change the output's shape, or drop the completion trailer that tells a
#: complete dump from a truncated one. The tools accept any unambiguous prefix of a long
#: option (``--pass=``), ``_`` for ``-``, and ``loose-``/``enable-``/``maximum-`` in front:
#: see ``_refused``.
_FORBIDDEN_LONG = (
    "password", "user", "host", "port", "socket", "protocol", "pipe", "shared-memory-base-name",
    "defaults-file", "defaults-extra-file", "no-defaults", "defaults-group-suffix",
    "print-defaults", "login-path", "result-file", "databases", "all-databases", "tab", "xml",
    "compact", "plugin-dir", "default-auth",
)
#: refused after ``skip-``/``disable-`` (or as ``--NAME=0|off|false``)
_FORBIDDEN_NEGATED = ("comments",)
_FALSE = ("0", "false", "off")
_FORBIDDEN_SHORT = set("puhPSrBATX")
#: a single quote in SQL, whatever sql_mode says about quoting
_Q = "CHAR(39 USING utf8mb4)"
_AUTH_CODES = ("ERROR 1045", "ERROR 1698", "ERROR 1044", "ERROR 1227")
_UNREACHABLE_CODES = ("ERROR 2002", "ERROR 2003", "ERROR 2005", "ERROR 2006", "ERROR 2013",
                      "ERROR 2026")


def quote_ident(name: str) -> str:
    """A backtick-quoted identifier."""
    return "`" + name.replace("`", "``") + "`"


def quote_str(value: str) -> str:
    """A string literal immune to sql_mode (NO_BACKSLASH_ESCAPES, ANSI_QUOTES)."""
    return f"CONVERT(0x{value.encode().hex()} USING utf8mb4)" if value else "''"


def dump_options(value: Any) -> tuple[str, ...]:
    """Validate the ``dump_options`` job option. Raises ``ConfigError``."""
    if value is None:
        return DEFAULT_DUMP_OPTIONS
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError("expected a list of option strings", key="dump_options")
    for opt in value:
        if not opt.startswith("-"):
            raise ConfigError(f"{opt!r} is not an option (must start with -)", key="dump_options")
        bad = _refused(opt) if opt.startswith("--") else bool(set(opt[1:]) & _FORBIDDEN_SHORT)
        if bad:
            raise ConfigError(
                f"{opt!r} is not allowed in dump_options",
                hint="dbcrate sets the connection through a private defaults file, dumps one "
                "database to stdout, and needs the '-- Dump completed' trailer",
                key="dump_options",
            )
    return tuple(value)


def _refused(opt: str) -> bool:
    """Whether the long option ``opt`` could, the way MariaDB/MySQL's option parser reads
    it, set one of ``_FORBIDDEN_LONG`` (or turn off a ``_FORBIDDEN_NEGATED`` one). A name
    that is a prefix of a forbidden option counts (the tool would expand it, or refuse it
    as ambiguous), whatever prefix it wears."""
    name, _, arg = opt[2:].partition("=")
    name = name.lower().replace("_", "-")
    negated = False
    while True:
        for prefix in ("loose-", "enable-", "maximum-"):
            if name.startswith(prefix):
                name = name[len(prefix):]
                break
        else:
            for prefix in ("skip-", "disable-"):
                if name.startswith(prefix):
                    name, negated = name[len(prefix):], not negated
                    break
            else:
                break
    if not name:
        return True

    def matches(options: tuple[str, ...]) -> bool:
        return any(o.startswith(name) for o in options)

    if matches(_FORBIDDEN_LONG):
        return True
    off = negated or arg.lower() in _FALSE
    return off and matches(_FORBIDDEN_NEGATED)


@dataclass(frozen=True)
class _State:
    """What one query learns about the server and the target database."""

    version: str
    mariadb: bool
    exists: bool
    charset: str
    collation: str
    contents: dict[str, int]
    superuser: bool = False


class MySQLEngine(SinglePart):
    """Dump and restore one MySQL or MariaDB database with the server's own tools."""

    name = "mysql"
    ext = "sql"

    def __init__(self, connection: Connection) -> None:
        self._target = MyTarget.parse(connection.url, connection.password)
        self._options = dict(connection.options)
        self._dump_options = dump_options(self._options.get("dump_options"))
        self._state_cache: _State | None = None
        self._dump_tool: tools.Tool | None = None

    # -- running the client ----------------------------------------------------------------

    def _env(self) -> dict[str, str]:
        # MySQL's clients read ~/.mylogin.cnf even with --defaults-file; point them nowhere.
        # Nothing inherited: the spawner adds the allowlisted rest (no MYSQL_* variable).
        return {"MYSQL_TEST_LOGIN_FILE": "/nonexistent/dbcrate-no-login-file"}

    def _redact(self) -> list[str]:
        return [self._target.password] if self._target.password else []

    def _script(self, script: str) -> list[list[str]]:
        """Run ``script`` (client commands such as ``DELIMITER`` allowed) from stdin."""
        return self._query("", script=script)

    def _query(self, sql: str, *, script: str | None = None) -> list[list[str]]:
        """Run ``sql`` with the client (no default database); rows of tab-separated text
        (``script``: a script fed on stdin instead). Raises ``AuthenticationFailed``,
        ``DatabaseUnreachable``, ``DatabaseError`` or ``ToolNotFound``; messages never
        hold the password."""
        client = tools.probe_client(self._options)
        t = self._target
        with t.defaults_file() as path:
            argv = [client, f"--defaults-file={path}", "--batch", "--skip-column-names",
                    *(["-e", sql] if script is None else [])]
            try:
                proc = subprocess.run(argv, env=child_env(self._env()), capture_output=True,
                                      text=True, input=script or "",
                                      timeout=_QUERY_TIMEOUT, check=False)
            except subprocess.TimeoutExpired:
                raise DatabaseUnreachable(
                    f"mysql at {t.where} did not answer within {_QUERY_TIMEOUT}s") from None
        if proc.returncode == 0:
            return [line.split("\t") for line in proc.stdout.splitlines()]
        text = t.scrub(proc.stderr.strip())
        lines = [ln for ln in text.splitlines() if ln.startswith("ERROR")] or text.splitlines()
        first = lines[0] if lines else f"{Path(client).name} exited {proc.returncode}"
        reason = first.split(": ", 1)[-1] if first.startswith("ERROR") else first
        if first.startswith(_AUTH_CODES):
            raise AuthenticationFailed(f"mysql at {t.where} rejected user {t.user!r}: {reason}")
        if first.startswith(_UNREACHABLE_CODES) or "can't connect" in first.lower():
            raise DatabaseUnreachable(f"cannot connect to mysql at {t.where}: {reason}")
        raise DatabaseError(f"mysql at {t.where} refused us: {reason}")

    def _state(self) -> _State:
        """Server version and the target database's existence, charset and contents.
        Raises as ``_query``. Read-only."""
        db = quote_str(self._target.database)
        # the only value in the query is a hex literal (quote_str)
        rows = self._query(
            "SELECT VERSION(), @@version_comment,"  # noqa: S608
            f" (SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {db}),"
            " (SELECT CONCAT(DEFAULT_CHARACTER_SET_NAME, ' ', DEFAULT_COLLATION_NAME)"
            f"  FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = {db}),"
            f" (SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = {db}),"
            f" (SELECT COUNT(*) FROM information_schema.ROUTINES WHERE ROUTINE_SCHEMA = {db}),"
            f" (SELECT COUNT(*) FROM information_schema.EVENTS WHERE EVENT_SCHEMA = {db}),"
            # a superuser: SUPER granted globally (ALL PRIVILEGES ON *.* includes it)
            " (SELECT COUNT(*) FROM information_schema.USER_PRIVILEGES WHERE PRIVILEGE_TYPE ="
            f" 'SUPER' AND GRANTEE = CONCAT({_Q}, REPLACE(CURRENT_USER(), '@',"
            f" CONCAT({_Q}, '@', {_Q})), {_Q}))"
        )
        if len(rows) != 1 or len(rows[0]) != 8:
            raise DatabaseError(f"unexpected answer from mysql at {self._target.where}")
        version, comment, exists, charset, tables, routines, events, superuser = rows[0]
        charset, _, collation = charset.partition(" ")
        counts = {"tables or views": int(tables), "routines": int(routines),
                  "events": int(events)}
        self._state_cache = _State(
            version=version, mariadb="mariadb" in f"{version} {comment}".lower(),
            exists=exists != "0", charset="" if charset == "NULL" else charset,
            collation=collation, contents={k: n for k, n in counts.items() if n},
            superuser=superuser != "0",
        )
        return self._state_cache

    def _flavour(self) -> str:
        state = self._state_cache or self._state()
        return "mariadb" if state.mariadb else "mysql"

    # -- probe -------------------------------------------------------------------------------

    def probe(self) -> EngineInfo:
        """Connect, read the server version, check that the database exists and resolve
        the matching dump tool. Raises ``DatabaseUnreachable``, ``AuthenticationFailed``,
        ``DatabaseError`` (e.g. no such database), ``ToolNotFound`` or ``ConfigError``.
        Changes nothing on the server."""
        state = self._state()
        if not state.exists:
            raise DatabaseError(
                f"database {self._target.database} does not exist on mysql at "
                f"{self._target.where} (or user {self._target.user!r} may not see it)",
                hint="check the database name in the job's url (percent-encode odd names)",
            )
        dump = self._dump_tool = tools.dump_tool(self._flavour(), self._options)
        su = f"user {self._target.user!r} has the SUPER privilege" if state.superuser else ""
        return EngineInfo(engine=self.name, server_version=state.version, tool=dump.name,
                          tool_version=dump.version, database=self._target.database,
                          superuser=su)

    # -- dump --------------------------------------------------------------------------------

    def dump(self) -> Iterator[bytes]:
        """Stream the SQL dump of the database (no CREATE DATABASE/USE) on the first
        ``next()``, probing the server first. Raises the ``probe()`` errors, then
        ``DumpFailed`` after EOF if the tool failed or its output lacks the completion
        trailer. Closing the iterator early kills the tool; the defaults file is always
        removed."""
        if self._dump_tool is None:
            self.probe()
        tool = self._dump_tool
        assert tool is not None
        options = self._dump_options
        if "dump_options" not in self._options and not tool.mariadb:
            options = (*options, *_MYSQL_ONLY_OPTIONS)
        tail = b""
        with self._target.defaults_file() as path:
            argv = [tool.path, f"--defaults-file={path}", *options, "--",
                    self._target.database]
            chunks = stream_stdout(argv, self._env(), tool.name, redact=self._redact())
            try:
                for chunk in chunks:
                    tail = (tail + chunk[-64:])[-64:]
                    yield chunk
            finally:  # kill the tool before its defaults file goes
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        last = tail.rstrip().rsplit(b"\n", 1)[-1]
        if not last.startswith(TRAILER):
            raise DumpFailed(
                f"{tool.name} exited 0 but its output lacks the completion trailer "
                f"({TRAILER.decode()!r}): the dump is incomplete",
                hint="check the dump tool and the server log; no backup was recorded",
            )

    # -- restore -----------------------------------------------------------------------------

    def check_restore_target(self, backup: EngineInfo, options: RestoreOptions) -> None:
        """See ``Engine.check_restore_target``: refuses a database holding any table,
        view, routine or event unless ``options.clean``. Read-only."""
        self._check_empty(self._state(), clean=options.clean)

    def _check_empty(self, state: _State, *, clean: bool) -> None:
        if state.exists and state.contents and not clean:
            what = ", ".join(f"{n} {name}" for name, n in state.contents.items())
            raise RestoreRefused(
                f"database {self._target.database} on mysql at {self._target.where} is not "
                f"empty ({what}); nothing was changed"
            )

    def restore(self, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        """Run the SQL dump ``chunks`` through the client into the database, creating it if
        missing. MySQL commits DDL implicitly, so nothing is loaded into a live non-empty
        database: with ``options.clean`` the dump is loaded into a sibling schema and
        swapped in when complete (:mod:`dbcrate.engines.mysql.swap`: the tables in one
        atomic ``RENAME TABLE``; views, routines, triggers and events recreated right
        after); any failure before the swap drops the sibling and leaves the database as
        it was.

        On any failure (``chunks`` raising, the client failing; also ``BaseException``) a
        database created here is dropped, and an existing empty one is dropped and
        recreated with its character set and collation. Raises ``RestoreRefused`` (not
        empty, not ``clean``), ``RestoreFailed``, the ``probe()`` connection errors or
        ``ToolNotFound``."""
        state = self._state()
        self._check_empty(state, clean=options.clean)
        client = tools.client_tool(self._flavour(), self._options)
        if state.exists and state.contents:
            self._restore_swap(client, chunks, state, options)
            return
        if not state.exists:
            self._create_database("", "", what="create")
        try:
            self._load(client, chunks, self._target.database)
        except BaseException as e:
            self._reset_after_failure(e, state)
            raise

    def _load(self, client: tools.Tool, chunks: Iterable[bytes], database: str) -> None:
        with self._target.defaults_file() as path:
            argv = [client.path, f"--defaults-file={path}", "--binary-mode", "--batch",
                    f"--database={database}"]
            feed_stdin(argv, self._env(), chunks, client.name, redact=self._redact())

    def _restore_swap(self, client: tools.Tool, chunks: Iterable[bytes], state: _State,
                      options: RestoreOptions) -> None:
        db = self._target.database
        new, old = mysql_swap.sibling_names(db)
        self._create_database(state.charset, state.collation, what="create", name=new)
        try:
            try:
                self._load(client, chunks, new)
            except RestoreFailed as e:
                raise RestoreFailed(
                    e.message.replace("the target was left as it was",
                                      f"it loaded into the new database {new}, which was "
                                      f"dropped: {db} was not changed"),
                    hint="fix what the client reports above, then restore again",
                ) from None
            mysql_swap.swap(self._query, self._script, db, new, old, keep_old=options.keep_old)
        except BaseException as e:
            try:
                self._query(f"DROP DATABASE IF EXISTS {quote_ident(new)}")
            except Exception as cleanup:  # keep the original error; say what is left
                e.add_note(f"the unfinished copy {new} could not be dropped: "
                           f"{self._target.scrub(str(cleanup))}")
            raise

    def _reset_after_failure(self, error: BaseException, state: _State) -> None:
        """Put the database back as it was before a failed restore (missing, or empty with
        its charset and collation); on failure, a note on ``error`` says what is left."""
        db = self._target.database
        try:
            self._query(f"DROP DATABASE IF EXISTS {quote_ident(db)}")
            if state.exists:
                self._create_database(state.charset, state.collation, what="recreate")
            interrupt.note_removed(f"what was restored into database {db}" if state.exists
                                   else f"database {db} created for this restore")
        except Exception as cleanup:  # keep the original error; say what is left
            error.add_note(f"the database {db} could not be put back as it was: "
                           f"{self._target.scrub(str(cleanup))}")

    def _create_database(self, charset: str, collation: str, *, what: str,
                         name: str | None = None) -> None:
        name = name or self._target.database
        sql = f"CREATE DATABASE {quote_ident(name)}"
        if charset.isidentifier():
            sql += f" CHARACTER SET {charset}"
        if collation.isidentifier():
            sql += f" COLLATE {collation}"
        try:
            self._query(sql)
        except DatabaseError as e:
            raise RestoreFailed(
                f"cannot {what} database {name}: {e.message}",
                hint="create the database yourself, or grant the user CREATE",
            ) from None
