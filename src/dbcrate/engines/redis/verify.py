"""The Redis checker of verified restores (docs/verify.md): write the decrypted RDB into
a private temporary directory, run ``redis-check-rdb`` on it, load it into a ``TempRedis``
and count the keys per database. Never touches the job's server."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field

from dbcrate.engines.process import child_env
from dbcrate.engines.redis.rdb import write_atomically
from dbcrate.engines.redis.rdbscan import RdbScan, scan
from dbcrate.engines.redis.restore import TempRedis
from dbcrate.errors import ToolNotFound

_KEYS_READ = re.compile(r"\[info\] (\d+) keys read")
_EXPIRED = re.compile(r"\[info\] (\d+) already expired")
_KEYSPACE = re.compile(r"^db(\d+):keys=(\d+)", re.M)


@dataclass
class RedisVerified:
    """What the checker found. ``check_ok`` False: redis-check-rdb rejected the file
    (``detail`` quotes it) and nothing was loaded."""

    check_ok: bool
    detail: str = ""
    server: str | None = None
    #: keys in the RDB less those already expired, per redis-check-rdb
    expected_keys: int | None = None
    #: keys per database once loaded
    loaded: dict[int, int] = field(default_factory=dict)
    #: per database: what RESIZEDB announces, the keys held and already expired
    scanned: RdbScan | None = None


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ToolNotFound(f"{name} not found", hint="install redis-server (Debian: apt-get "
                           "install redis-server, which ships redis-check-rdb too)")
    return path


def verify(chunks: Iterable[bytes], parent: str | None, *, timeout: float = 120.0,
           ) -> RedisVerified:
    """Check and load the RDB from ``chunks``. Raises what ``chunks`` raises,
    ``ToolNotFound``, ``RestoreFailed`` (the server did not load it). The temporary
    directory and server are removed in every case."""
    server, checker = _tool("redis-server"), _tool("redis-check-rdb")
    temp = TempRedis(server, parent)
    try:
        write_atomically(chunks, temp.rdb)
        proc = subprocess.run([checker, str(temp.rdb)], capture_output=True,
                              timeout=timeout, check=False, env=child_env())
        # it quotes what it read from the (untrusted) file: not necessarily UTF-8
        out = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        if proc.returncode != 0:
            lines = [ln for ln in out.splitlines() if ln.strip()]
            return RedisVerified(False, "redis-check-rdb: " + " / ".join(lines[-3:]))
        read, expired = _KEYS_READ.search(out), _EXPIRED.search(out)
        expected = int(read.group(1)) - (int(expired.group(1)) if expired else 0) \
            if read else None
        scanned = scan(temp.rdb)
        with temp.start(timeout) as client:
            info = client.call("INFO", "keyspace")
            version = client.call("INFO", "server")
        text = info.decode() if isinstance(info, bytes) else str(info)
        vtext = version.decode() if isinstance(version, bytes) else str(version)
        m = re.search(r"redis_version:(\S+)", vtext)
        loaded = {int(db): int(n) for db, n in _KEYSPACE.findall(text)}
        return RedisVerified(True, "RDB looks OK", m.group(1) if m else None, expected, loaded,
                             scanned)
    finally:
        temp.stop()
