"""MongoDB: ``mongodump --archive`` streamed to stdout, ``mongorestore --archive`` fed from
stdin (``--drop`` only with ``clean``).

The password never reaches argv: it goes into a YAML config file (``password: ...``,
mode 0600, in a private temp dir removed as soon as the tool exits) passed with
``--config``; the URI in argv carries the user but no password. ``mongosh``, when present,
reads the server version (``buildInfo``) and checks that a restore target is empty; it
gets the full URI through its environment only.

Job options: ``mongodump_path``, ``mongorestore_path``, ``mongosh_path``,
``version_probe`` (``auto``: mongosh if found; ``mongosh``: required; ``none``),
``temp_dir`` (where the private config dir is made). See docs/engines/mongodb.md.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import quote

from dbcrate.engines.base import Connection, RestoreOptions, SinglePart
from dbcrate.engines.mongodb.url import MongoTarget
from dbcrate.engines.process import child_env, feed_stdin, stream_stdout
from dbcrate.errors import (
    AuthenticationFailed,
    ConfigError,
    DatabaseError,
    DatabaseUnreachable,
    DbcrateError,
    DumpFailed,
    RestoreFailed,
    RestoreRefused,
    ToolNotFound,
)
from dbcrate.model import EngineInfo
from dbcrate.private_files import secret_file

log = logging.getLogger("dbcrate.engines.mongodb.engine")
#: the first four bytes of a mongodump archive (0x8199e26d, little-endian)
ARCHIVE_MAGIC = bytes.fromhex("6de29981")
_AUTH_MARKERS = ("authentication failed", "auth error", "sasl", "unauthorized",
                 "requires authentication", "command listdatabases requires")
_CONN_MARKERS = ("server selection error", "no reachable servers", "connection refused",
                 "econnrefused", "context deadline exceeded", "i/o timeout",
                 "serverselectionerror", "no such host", "enotfound", "network is unreachable")
_SYSTEM_DBS = ("admin", "local", "config")
_MONGOSH_SCRIPT = """
const m = new Mongo(process.env.DBCRATE_MONGO_URI);
const name = process.env.DBCRATE_MONGO_DB;
const out = {version: m.getDB("admin").runCommand({buildInfo: 1}).version};
if (process.env.DBCRATE_MONGO_COUNT === "1") {
  const dbs = name ? [name] : m.getDBNames().filter(d => !["admin", "local", "config"].includes(d));
  out.collections = dbs.map(d => m.getDB(d).getCollectionNames()
    .filter(c => !c.startsWith("system.")).length).reduce((a, b) => a + b, 0);
}
print(JSON.stringify(out));
"""


@contextlib.contextmanager
def _config_file(target: MongoTarget, parent: str | None) -> Iterator[list[str]]:
    """``["--config", FILE]`` with ``password: ...``
    (and ``sslPEMKeyPassword: ...``, the tools' name for the url's
    ``tlsCertificateKeyFilePassword``) in a private file (``private_files.secret_file``;
    ``temp_dir`` overrides where), or ``[]`` without either."""
    if target.password is None and target.key_password is None:
        yield []
        return
    # a JSON string is a valid YAML double-quoted scalar
    text = ""
    if target.password is not None:
        text += f"password: {json.dumps(target.password)}\n"
    if target.key_password is not None:
        text += f"sslPEMKeyPassword: {json.dumps(target.key_password)}\n"
    with secret_file("tool.yaml", text, under=parent, what="tool config file") as path:
        yield ["--config", str(path)]


class MongoEngine(SinglePart):
    """Dump and restore with mongodump/mongorestore archives."""

    name = "mongodb"
    ext = "mongoarchive"

    def __init__(self, connection: Connection) -> None:
        self._target = MongoTarget.parse(connection.url, connection.password)
        self._options: Mapping[str, Any] = dict(connection.options)
        self._info: EngineInfo | None = None

    def _tool(self, name: str) -> str:
        return str(self._options.get(f"{name}_path") or name)

    def _redact(self) -> list[str]:
        out = []
        for p in (self._target.password, self._target.key_password):
            out += [p, quote(p, safe="")] if p else []
        return out

    # -- probe ---------------------------------------------------------------------------

    def probe(self) -> EngineInfo:
        """The mongodump version (``--version``) and, with mongosh, the server's version
        from ``buildInfo``. Raises ``ToolNotFound``, and (mongosh) ``DatabaseUnreachable``
        or ``AuthenticationFailed``. Changes nothing."""
        tool = self._tool("mongodump")
        try:
            out = subprocess.run([tool, "--version"], capture_output=True, timeout=60,
                                 check=False, stdin=subprocess.DEVNULL, env=child_env())
        except (FileNotFoundError, PermissionError):
            raise ToolNotFound(
                f"mongodump not found: {tool}",
                hint="install MongoDB Database Tools or set mongodump_path",
            ) from None
        first = out.stdout.decode("utf-8", "replace").strip().splitlines()
        version = first[0].rsplit(":", 1)[-1].strip() if first else ""
        server = "unknown"
        facts = self._mongosh(count=False)
        if facts is not None:
            server = str(facts.get("version") or "unknown")
        self._info = EngineInfo(self.name, server, "mongodump", version, self._target.database)
        return self._info

    def _mongosh(self, *, count: bool) -> dict[str, Any] | None:
        """Run the mongosh script; None when mongosh is not used. Raises the connection
        errors, ``ToolNotFound`` (``version_probe = "mongosh"`` without mongosh)."""
        mode = str(self._options.get("version_probe", "auto"))
        if mode not in ("auto", "mongosh", "none"):
            raise ConfigError(f"version_probe: unknown value {mode!r} (auto, mongosh, none)")
        shell = shutil.which(self._tool("mongosh"))
        if mode == "none" or (mode == "auto" and shell is None):
            return None
        if shell is None:
            raise ToolNotFound(f"mongosh not found: {self._tool('mongosh')}")
        env = child_env({"DBCRATE_MONGO_URI": self._target.uri(with_password=True),
                         "DBCRATE_MONGO_DB": self._target.database,
                         "DBCRATE_MONGO_COUNT": str(int(count))})
        proc = subprocess.run([shell, "--nodb", "--quiet", "--norc", "--eval", _MONGOSH_SCRIPT],
                              env=env, capture_output=True, timeout=120, check=False,
                              stdin=subprocess.DEVNULL)
        text = self._target.scrub((proc.stdout + proc.stderr).decode("utf-8", "replace"))
        if proc.returncode != 0:
            raise self._classify(text, "mongosh") or DatabaseError(
                f"mongosh could not query mongodb at {self._target.where}: {_last(text)}")
        for line in reversed(text.strip().splitlines()):
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    return value
        raise DatabaseError(f"unexpected output from mongosh: {_last(text)}")

    def _classify(self, text: str, tool: str) -> DbcrateError | None:
        """A connection/auth error for the tool output ``text``, or None."""
        low = text.lower()
        if any(m in low for m in _AUTH_MARKERS):
            who = f"user {self._target.user!r}" if self._target.user else "us"
            return AuthenticationFailed(
                f"mongodb at {self._target.where} rejected {who} ({tool}): {_last(text)}")
        if any(m in low for m in _CONN_MARKERS):
            return DatabaseUnreachable(
                f"cannot connect to mongodb at {self._target.where} ({tool}): {_last(text)}")
        return None

    # -- dump ----------------------------------------------------------------------------

    def dump(self) -> Iterator[bytes]:
        """Stream ``mongodump --archive`` (probing first if not yet done). Raises the
        ``probe()`` errors; after the tool's EOF, ``AuthenticationFailed`` or
        ``DatabaseUnreachable`` when its stderr says so, else ``DumpFailed`` with the
        stderr tail; ``DumpFailed`` if the output is not an archive. Closing the iterator
        early kills mongodump; the private config dir is removed in every case."""
        if self._info is None:
            self.probe()
        with _config_file(self._target, self._options.get("temp_dir")) as cfg:
            argv = [self._tool("mongodump"), *cfg, f"--uri={self._target.uri()}", "--archive"]
            try:
                first = True
                for chunk in stream_stdout(argv, _env(), "mongodump", redact=self._redact()):
                    if first and not chunk.startswith(ARCHIVE_MAGIC[: len(chunk)]):
                        raise DumpFailed("mongodump did not write an archive (bad magic)")
                    first = False
                    yield chunk
                if first:
                    raise DumpFailed("mongodump wrote nothing")
            except DumpFailed as e:
                raise self._classify(e.stderr_tail, "mongodump") or e from None

    # -- restore -------------------------------------------------------------------------

    def check_restore_target(self, backup: EngineInfo, options: RestoreOptions) -> None:
        """With mongosh: raise ``RestoreRefused`` if the target database (every non-system
        database without one in the URI) has collections and ``options.clean`` is false;
        the connection errors. Without mongosh nothing can be checked (logged). Changes
        nothing."""
        facts = self._mongosh(count=True)
        if facts is None:
            if not options.clean:
                log.warning("mongosh not found: cannot check that mongodb at %s is empty; "
                            "mongorestore will not replace existing documents",
                            self._target.where)
            return
        n = int(facts.get("collections") or 0)
        if n and not options.clean:
            what = self._target.database or "the server"
            raise RestoreRefused(
                f"{what} on mongodb at {self._target.where} is not empty ({n} collections); "
                "nothing was changed")

    def restore(self, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        """Feed the archive ``chunks`` to ``mongorestore --archive`` (``--drop`` with
        ``clean``: collections in the archive are replaced). Not atomic (MongoDB has no
        restore transaction): on failure the target may hold part of the archive.
        Raises ``RestoreRefused`` (see ``check_restore_target``), ``RestoreFailed`` with
        the tool's stderr tail, ``AuthenticationFailed``/``DatabaseUnreachable`` when the
        tool says so, ``ToolNotFound``; an error ``chunks`` raises propagates unchanged."""
        self.check_restore_target(EngineInfo(self.name, ""), options)
        with _config_file(self._target, self._options.get("temp_dir")) as cfg:
            argv = [self._tool("mongorestore"), *cfg, f"--uri={self._target.uri()}", "--archive"]
            if options.clean:
                argv.append("--drop")
            try:
                feed_stdin(argv, _env(), chunks, "mongorestore", redact=self._redact())
            except RestoreFailed as e:
                e.message = e.message.replace("the target was left as it was",
                                              "the target may hold part of the archive")
                raise self._classify(e.message, "mongorestore") or e from None


def _env() -> dict[str, str]:
    """The tools' own variables: none (credentials go by the --config file); the spawner
    adds the allowlisted rest (``process.child_env``)."""
    return {}


def _last(text: str) -> str:
    """The last line of a tool's output without its log timestamp, at most 300 chars."""
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    if not lines:
        return "no output"
    line = lines[-1].rsplit("\t", 1)[-1]
    return line if len(line) <= 300 else "..." + line[-300:]
