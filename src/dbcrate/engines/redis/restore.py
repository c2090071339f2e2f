"""Redis restore machinery: a private temporary redis-server, key copying with TTLs, and
the stop/start commands of an in-place restore."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from dbcrate import interrupt
from dbcrate.engines.process import child_env
from dbcrate.engines.redis.resp import RespClient, RespError
from dbcrate.engines.redis.url import RedisTarget
from dbcrate.errors import AuthenticationFailed, DatabaseError, RestoreFailed, ToolNotFound
from dbcrate.private_files import sweep_dead

#: keys per SCAN / DUMP / RESTORE round trip
BATCH = 500
#: payload bytes per RESTORE pipeline before it is sent
BATCH_BYTES = 8 << 20
_LOG_TAIL = 2000
#: the temporary server's private dir: ``dbcrate-redis-<pid>-*``
TEMP_PREFIX = "dbcrate-redis-"


def _tail(path: Path) -> str:
    try:
        data = path.read_bytes()[-_LOG_TAIL:]
    except OSError:
        return ""
    return data.decode("utf-8", "replace").strip()


class TempRedis:
    """A redis-server we start on a private unix socket in a private temp dir (mode 0700),
    with no TCP port and no persistence, to read an RDB file. ``stop()`` kills it and
    removes the dir."""

    def __init__(self, server: str, parent: str | None = None) -> None:
        self.server = server
        base = parent or tempfile.gettempdir()
        sweep_dead(base, TEMP_PREFIX)  # dirs of runs killed by SIGKILL
        self.dir = Path(tempfile.mkdtemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-", dir=base))
        self.rdb = self.dir / "dump.rdb"
        self.socket = str(self.dir / "redis.sock")
        self.log = self.dir / "redis.log"
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float) -> RespClient:
        """Start redis-server on ``self.rdb`` and wait until it has loaded it. Raises
        ``ToolNotFound`` or ``RestoreFailed`` (with the server's log tail)."""
        argv = [
            self.server, "--port", "0", "--unixsocket", self.socket, "--unixsocketperm", "700",
            "--dir", str(self.dir), "--dbfilename", "dump.rdb", "--save", "",
            "--appendonly", "no", "--daemonize", "no", "--logfile", str(self.log),
            "--databases", "256", "--protected-mode", "no",
        ]
        try:
            with interrupt.critical():  # a stop signal kills it at once, and stop() reaps it
                self._proc = subprocess.Popen(
                    argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, close_fds=True, env=child_env(),
                )
                interrupt.track(self._proc)
        except (FileNotFoundError, PermissionError) as e:
            raise ToolNotFound(
                f"redis-server not found: {self.server}",
                hint="install redis-server (Debian: apt-get install redis-server) or set "
                "redis_server_path; --mode copy loads the snapshot into a temporary server",
            ) from e
        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                raise RestoreFailed(
                    f"the temporary redis-server could not load the snapshot "
                    f"(exit status {self._proc.returncode}); the target was not changed\n"
                    f"{_tail(self.log)}".rstrip(),
                    hint="a snapshot from a newer Redis needs a redis-server at least as new "
                    "(redis_server_path)",
                )
            with contextlib.suppress(OSError, DatabaseError):
                client = RespClient.connect_unix(self.socket)
                try:
                    client.call("PING")
                    return client
                except RespError:  # LOADING
                    client.close()
            if time.monotonic() > deadline:
                raise RestoreFailed(
                    f"the temporary redis-server did not finish loading in {timeout:.0f}s; "
                    "the target was not changed",
                    hint="raise start_timeout for large snapshots",
                )
            time.sleep(0.05)

    def stop(self) -> None:
        """Kill the server (if started) and remove the temp dir. Idempotent."""
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            interrupt.untrack(self._proc)
        shutil.rmtree(self.dir, ignore_errors=True)
        interrupt.note_removed("temporary redis-server and its snapshot copy"
                               if self._proc is not None else "snapshot copy")


def copy_keys(
    source: RespClient,
    target: Callable[[], RespClient],
    *,
    clean: bool,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Copy every key of every database of ``source`` into the same-numbered database of
    a ``target()`` connection with DUMP/PTTL/RESTORE (TTLs kept; keys that expire meanwhile
    are skipped). With ``clean`` each of those target databases is FLUSHDB'd first and
    RESTORE replaces. Returns the number of keys copied. Not atomic: raises
    ``RestoreFailed`` on the first rejected key (the target holds a partial copy), or the
    connection errors."""
    copied = 0
    with target() as dst:
        for db in sorted(source.keyspace()):
            source.call("SELECT", db)
            try:
                dst.call("SELECT", db)
                if clean:
                    dst.call("FLUSHDB")
            except RespError as e:
                raise RestoreFailed(
                    f"redis at {dst.where} refused database {db}: {e}; the target was not "
                    "changed for this database",
                    hint="the snapshot holds several databases; the target must offer them",
                ) from None
            cursor = b"0"
            while True:
                reply = source.call("SCAN", cursor, "COUNT", BATCH)
                cursor, keys = reply[0], reply[1]
                copied += _copy_batch(source, dst, db, keys, clean)
                if progress:
                    progress(copied)
                if cursor == b"0":
                    break
    return copied


def _copy_batch(source: RespClient, dst: RespClient, db: int, keys: list[bytes],
                clean: bool) -> int:
    if not keys:
        return 0
    replies = source.pipeline([c for k in keys for c in (("DUMP", k), ("PTTL", k))])
    commands: list[Sequence[Any]] = []
    size = 0
    n = 0
    for i, key in enumerate(keys):
        payload, pttl = replies[2 * i], replies[2 * i + 1]
        if isinstance(payload, RespError):
            raise RestoreFailed(f"reading the snapshot failed: {payload}")
        if payload is None or pttl == -2:
            continue  # expired since SCAN
        cmd: list[Any] = ["RESTORE", key, max(int(pttl), 0), payload]
        if clean:
            cmd.append("REPLACE")
        commands.append(cmd)
        size += len(payload)
        if size >= BATCH_BYTES:
            n += _restore(dst, db, commands)
            commands, size = [], 0
    return n + _restore(dst, db, commands)


def _restore(dst: RespClient, db: int, commands: list[Sequence[Any]]) -> int:
    for reply in dst.pipeline(commands):
        if isinstance(reply, RespError):
            raise RestoreFailed(
                f"redis at {dst.where} rejected a key in database {db}: {reply}; the target "
                "now holds a partial copy",
                hint="BUSYKEY: the target changed meanwhile (use --clean); 'payload version': "
                "the target is older than the snapshot's Redis",
            )
    return len(commands)


def run_command(argv: Any, what: str, timeout: float) -> None:
    """Run a configured stop/start command (an argv list, no shell). Raises
    ``RestoreFailed`` with its output tail if it fails or times out, ``ToolNotFound``
    if it cannot be started."""
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) for a in argv):
        raise RestoreFailed(f"{what} must be a non-empty list of strings (an argv)")
    try:
        proc = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=timeout, check=False, env=child_env())
    except (FileNotFoundError, PermissionError) as e:
        raise ToolNotFound(f"{what} cannot be run: {argv[0]}: {e.strerror}") from None
    except subprocess.TimeoutExpired:
        raise RestoreFailed(f"{what} did not finish within {timeout:.0f}s") from None
    if proc.returncode != 0:
        out = (proc.stdout + proc.stderr)[-_LOG_TAIL:].decode("utf-8", "replace").strip()
        raise RestoreFailed(f"{what} exited with status {proc.returncode}\n{out}".rstrip())


def wait_down(target: RedisTarget, timeout: float) -> None:
    """Wait until nothing accepts connections at ``target``. Raises ``RestoreFailed``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with contextlib.closing(_socket_to(target)):
                pass
        except OSError:
            return
        time.sleep(0.05)
    raise RestoreFailed(
        f"redis at {target.where} still accepts connections after stop_command; "
        "nothing was changed",
        hint="stop_command must stop the server before it returns (or within start_timeout)",
    )


def wait_up(target: RedisTarget, timeout: float) -> None:
    """Wait until ``target`` answers PING (i.e. has loaded its data). Raises
    ``RestoreFailed`` after ``timeout`` seconds; ``AuthenticationFailed`` at once."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        try:
            with RespClient.connect(target, timeout=2):
                return
        except AuthenticationFailed:
            raise
        except DatabaseError as e:
            last = e.message
        time.sleep(0.1)
    raise RestoreFailed(
        f"redis at {target.where} did not come back within {timeout:.0f}s after "
        f"start_command: {last}",
        hint="the restored dump.rdb is in place; check the server's log",
    )


def _socket_to(target: RedisTarget) -> socket.socket:
    return socket.create_connection((target.host, target.port), timeout=1)
