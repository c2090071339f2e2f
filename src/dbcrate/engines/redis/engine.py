"""Redis: ``redis-cli --rdb -`` streams an RDB snapshot of the whole server (every
database); restores put it back in one of three modes (``RestoreOptions.mode``):

- ``copy`` (default without ``--path``): load the snapshot into a private temporary
  redis-server and copy every key with its TTL into the running target (DUMP/RESTORE).
  Works with servers dbcrate cannot restart (managed Redis).
- ``inplace``: write the snapshot beside the server's ``dump.rdb``, run ``stop_command``,
  rename it into place, run ``start_command``, wait for the server to answer.
- ``datadir`` (default with ``--path``): put ``dump.rdb`` into ``--path DIR`` atomically,
  for a server that will start from it. Connects to nothing.

Job options: ``redis_cli_path``, ``redis_server_path``, TLS (``tls``, ``tls_cacert``,
``tls_cert``, ``tls_key``, ``tls_sni``, ``tls_insecure``), ``stop_command`` and
``start_command`` (argv lists), ``rdb_path``, ``start_timeout`` (seconds, default 60),
``temp_dir`` (copy mode), ``zero_sync_delay`` (set ``repl-diskless-sync-delay`` to 0 for
the dump and back). The password reaches redis-cli only as ``REDISCLI_AUTH``.
See docs/engines/redis.md.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import subprocess
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

from dbcrate.engines.base import Connection, RestoreOptions, SinglePart
from dbcrate.engines.process import child_env, stream_stdout
from dbcrate.engines.redis.rdb import checked_rdb, commit, stage, write_atomically
from dbcrate.engines.redis.resp import RespClient, RespError
from dbcrate.engines.redis.restore import TempRedis, copy_keys, run_command, wait_down, wait_up
from dbcrate.engines.redis.url import RedisTarget
from dbcrate.errors import ConfigError, RestoreFailed, RestoreRefused, ToolNotFound, UsageError
from dbcrate.model import EngineInfo

log = logging.getLogger("dbcrate.engines.redis.engine")
MODES = ("copy", "inplace", "datadir")
_SYNC_DELAY = "repl-diskless-sync-delay"


class RedisEngine(SinglePart):
    """Snapshot and restore a Redis server with redis-cli and (copy mode) redis-server."""

    name = "redis"
    ext = "rdb"

    def __init__(self, connection: Connection) -> None:
        self._options: Mapping[str, Any] = dict(connection.options)
        self._target = RedisTarget.parse(connection.url, connection.password, self._options)
        self._info: EngineInfo | None = None

    def _opt(self, key: str, default: Any = None) -> Any:
        return self._options.get(key, default)

    def _timeout(self) -> float:
        value = self._opt("start_timeout", 60)
        if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
            raise ConfigError("start_timeout: expected a positive number of seconds")
        return float(value)

    def _connect(self) -> RespClient:
        return RespClient.connect(self._target)

    # -- probe ---------------------------------------------------------------------------

    def probe(self) -> EngineInfo:
        """Connect (AUTH, TLS as configured), read ``INFO server`` and the redis-cli
        version. Raises ``DatabaseUnreachable``, ``AuthenticationFailed``, ``DatabaseError``
        or ``ToolNotFound``. Changes nothing on the server."""
        with self._connect() as client:
            info = client.info("server")
            superuser = _superuser(client)
        cli = str(self._opt("redis_cli_path", "redis-cli"))
        try:
            proc = subprocess.run([cli, "--version"], capture_output=True, timeout=30,
                                  check=False, env=child_env())
            out = proc.stdout.decode("utf-8", "replace").strip()
        except (FileNotFoundError, PermissionError):
            raise ToolNotFound(
                f"redis-cli not found: {cli}",
                hint="install redis-tools (Debian: apt-get install redis-tools) "
                "or set redis_cli_path",
            ) from None
        self._info = EngineInfo(
            engine=self.name,
            server_version=info.get("redis_version", "unknown"),
            tool="redis-cli",
            tool_version=out.removeprefix("redis-cli ").split()[0] if out else "",
            database=str(self._target.db),
            superuser=superuser,
        )
        return self._info

    # -- dump ----------------------------------------------------------------------------

    def dump(self) -> Iterator[bytes]:
        """Stream ``redis-cli --rdb -`` (probing first if not yet done). Raises the
        ``probe()`` errors, then ``DumpFailed`` with redis-cli's stderr tail if it failed,
        or if the stream is not a complete RDB file (truncated). Closing the iterator early
        kills redis-cli. With ``zero_sync_delay`` the server's repl-diskless-sync-delay is
        set to 0 for the transfer and put back afterwards."""
        if self._info is None:
            self.probe()
        cli = str(self._opt("redis_cli_path", "redis-cli"))
        argv = [cli, *self._target.cli_args(), "--rdb", "-"]
        redact = [self._target.password] if self._target.password else []
        with self._sync_delay_zero():
            yield from checked_rdb(
                stream_stdout(argv, self._target.cli_env(), "redis-cli", redact=redact)
            )

    @contextlib.contextmanager
    def _sync_delay_zero(self) -> Iterator[None]:
        if not self._opt("zero_sync_delay", False):
            yield
            return
        old: str | None = None
        with self._connect() as client:
            old = client.config_get(_SYNC_DELAY)
            if old is None:
                log.warning("CONFIG is not allowed on redis at %s: the snapshot starts after "
                            "the server's %s", self._target.where, _SYNC_DELAY)
            elif old != "0":
                client.call("CONFIG", "SET", _SYNC_DELAY, "0")
        try:
            yield
        finally:
            if old not in (None, "0"):
                with self._connect() as client:
                    client.call("CONFIG", "SET", _SYNC_DELAY, str(old))

    # -- restore -------------------------------------------------------------------------

    def _mode(self, options: RestoreOptions) -> str:
        mode = options.mode or ("datadir" if options.path else "copy")
        if mode not in MODES:
            raise UsageError(f"unknown redis restore mode {mode!r}",
                             hint=f"use --mode {', '.join(MODES)}")
        if mode == "datadir" and not options.path:
            raise UsageError("--mode datadir needs --path DIR (where dump.rdb goes)")
        if mode != "datadir" and options.path:
            raise UsageError(f"--path applies to --mode datadir only, not {mode}")
        if mode == "inplace":
            for key in ("stop_command", "start_command"):
                if not self._opt(key):
                    raise UsageError(f"--mode inplace needs the job option {key} (an argv list)",
                                     hint="see docs/engines/redis.md")
        return mode

    def check_restore_target(self, backup: EngineInfo, options: RestoreOptions) -> None:
        """Raise ``UsageError`` for an impossible mode; ``RestoreRefused`` if the target
        holds keys in any database (copy, inplace) or ``DIR/dump.rdb`` exists (datadir)
        and ``options.clean`` is false, or (inplace) the server persists with AOF; the
        connection errors as ``DatabaseError``. Changes nothing."""
        mode = self._mode(options)
        if mode == "datadir":
            self._datadir_dest(options)
            return
        with self._connect() as client:
            keyspace = client.keyspace()
            if keyspace and not options.clean:
                total = sum(keyspace.values())
                raise RestoreRefused(
                    f"redis at {self._target.where} is not empty ({total} keys in "
                    f"{len(keyspace)} database(s)); nothing was changed",
                    hint="restore into an empty server with --to, or pass --clean",
                )
            if mode == "inplace":
                self._rdb_path(client)
                if client.config_get("appendonly") == "yes":
                    raise RestoreRefused(
                        f"redis at {self._target.where} has appendonly yes: after a restart "
                        "it loads its AOF, not dump.rdb; nothing was changed",
                        hint="use --mode copy, or turn appendonly off for the restore",
                    )

    def _datadir_dest(self, options: RestoreOptions) -> Path:
        assert options.path
        d = Path(options.path)
        if not d.is_dir():
            raise UsageError(f"--path {d} is not a directory")
        dest = d / "dump.rdb"
        if dest.exists() and not options.clean:
            raise RestoreRefused(f"{dest} exists; nothing was changed",
                                 hint="pass --clean to replace it, or choose another --path")
        return dest

    def _rdb_path(self, client: RespClient) -> Path:
        configured = self._opt("rdb_path")
        if configured:
            return Path(str(configured))
        d, name = client.config_get("dir"), client.config_get("dbfilename")
        if not d or not name:
            raise UsageError("cannot learn where the server loads dump.rdb from (CONFIG is "
                             "not allowed); set the job option rdb_path")
        return Path(d) / name

    def restore(self, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        """Restore the RDB ``chunks`` by ``options.mode`` (see the module doc).

        datadir: atomic (temp file, fsync, rename); an error leaves the dir as it was.
        inplace: the snapshot is written and fsynced beside ``rdb_path`` before the server
        is stopped, so a failing source changes nothing; after the stop the rename is
        atomic; if the server does not come back, ``RestoreFailed`` says the file is in
        place. copy: not atomic; the snapshot is loaded completely before the target is
        touched; a rejected key raises ``RestoreFailed`` with a partial copy in the target.
        Raises ``RestoreRefused``/``UsageError`` as ``check_restore_target``,
        ``RestoreFailed``, ``ToolNotFound``, the connection errors, and whatever
        ``chunks`` raises (unchanged)."""
        mode = self._mode(options)
        if mode == "datadir":
            write_atomically(chunks, self._datadir_dest(options))
        elif mode == "inplace":
            self._restore_inplace(chunks, options)
        else:
            self._restore_copy(chunks, options)

    def _restore_inplace(self, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        self.check_restore_target(EngineInfo(self.name, ""), options)
        with self._connect() as client:
            dest = self._rdb_path(client)
        timeout = self._timeout()
        tmp = stage(chunks, dest)
        try:
            run_command(self._opt("stop_command"), "stop_command", timeout)
            wait_down(self._target, timeout)
            commit(tmp, dest)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise
        try:
            run_command(self._opt("start_command"), "start_command", timeout)
            wait_up(self._target, timeout)
        except RestoreFailed as e:
            e.message += f"\nthe restored snapshot is in place at {dest}"
            raise

    def _restore_copy(self, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        self.check_restore_target(EngineInfo(self.name, ""), options)
        server = str(self._opt("redis_server_path", "redis-server"))
        if shutil.which(server) is None:
            raise ToolNotFound(f"redis-server not found: {server}",
                               hint="--mode copy loads the snapshot into a temporary "
                               "redis-server: install redis-server or set redis_server_path")
        temp = TempRedis(server, self._opt("temp_dir"))
        try:
            write_atomically(chunks, temp.rdb)
            with temp.start(self._timeout()) as source:
                n = copy_keys(source, self._connect, clean=options.clean)
            log.info("copied %d keys into redis at %s", n, self._target.where)
        except RespError as e:
            raise RestoreFailed(f"copying into redis at {self._target.where} failed: {e}") from None
        finally:
            temp.stop()


def _superuser(client: RespClient) -> str:
    """Why the connected user may run every command ("" if not): no ACLs at all (Redis
    before 6), or an ACL user whose command rules start with ``+@all``. A user that may
    not run ``ACL WHOAMI`` is not one. Raises only connection errors."""
    try:
        me = client.call("ACL", "WHOAMI")
    except RespError as e:
        if "unknown command" in str(e).lower():
            return "the server has no ACLs (Redis before 6): every client may run every command"
        return ""
    name = me.decode() if isinstance(me, bytes) else str(me)
    try:
        reply = client.call("ACL", "GETUSER", name)
    except RespError:
        return ""
    fields = dict(zip(reply[::2], reply[1::2], strict=False)) if isinstance(reply, list) else {}
    rules = fields.get(b"commands", b"")
    rules = rules.decode() if isinstance(rules, bytes) else str(rules)
    return f"ACL user {name!r} has +@all" if rules.split()[:1] == ["+@all"] else ""
