"""Redis fixtures: real redis-server processes (Debian's package) on free loopback ports,
each with a private temp dir and ``requirepass`` set (so AUTH is exercised). The system
instance on 6379 is never touched.

- ``redis_factory()`` (function): start another ``RedisServer`` (``password=`` to choose);
  every server started is stopped at the end.
- ``redis_server`` (function): a fresh server, empty. A ``RedisServer`` has ``.url``,
  ``.password`` and ``.checksums()`` like every database fixture.
- ``load_sample(client_or_server)``: strings (binary, empty, large), hashes, lists, sets,
  sorted sets, streams (with a consumer group), keys with TTLs, in databases 0 and 3.
- ``checksums(server)``: ``{(db, key): (type, digest of a canonical value, ttl bucket)}``;
  TTLs are compared in minutes (``-1`` = no expiry).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dbcrate.engines.redis.resp import RespClient
from dbcrate.engines.redis.url import RedisTarget
from dbcrate.sandbox import free_port

REDIS_SERVER = shutil.which("redis-server") or "/usr/bin/redis-server"
REDIS_CLI = shutil.which("redis-cli") or "/usr/bin/redis-cli"



@dataclass
class RedisServer:
    """A daemonized redis-server started from ``dir/redis.conf``; ``stop_argv`` and
    ``start_argv`` really stop and start it (for in-place restores)."""

    dir: Path
    port: int = field(default_factory=free_port)
    password: str = field(default_factory=lambda: "pw-" + uuid.uuid4().hex)
    save: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def conf(self) -> Path:
        return self.dir / "redis.conf"

    @property
    def pidfile(self) -> Path:
        return self.dir / "redis.pid"

    @property
    def rdb(self) -> Path:
        return self.dir / "dump.rdb"

    def write_conf(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        lines = [
            "bind 127.0.0.1", f"port {self.port}", f"dir {self.dir}", "dbfilename dump.rdb",
            f"requirepass {self.password}", "appendonly no", "repl-diskless-sync-delay 0",
            "daemonize yes", f"pidfile {self.pidfile}", f"logfile {self.dir / 'redis.log'}",
            "save 3600 1" if self.save else 'save ""', "databases 16",
        ]
        self.conf.write_text("\n".join(lines) + "\n")
        self.conf.chmod(0o600)

    @property
    def start_argv(self) -> list[str]:
        return [REDIS_SERVER, str(self.conf)]

    @property
    def stop_argv(self) -> list[str]:
        pid = self.pidfile
        return ["sh", "-c", f'kill "$(cat {pid})" && while [ -e {pid} ]; do sleep 0.05; done']

    def start(self) -> RedisServer:
        self.write_conf()
        subprocess.run(self.start_argv, check=True, timeout=30)
        deadline = time.monotonic() + 20
        while True:
            try:
                with self.client():
                    return self
            except Exception:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def stop(self) -> None:
        if self.pidfile.exists():
            subprocess.run(self.stop_argv, check=False, timeout=30)

    def target(self) -> RedisTarget:
        return RedisTarget.parse(self.url, self.password)

    def client(self, db: int = 0) -> RespClient:
        t = RedisTarget.parse(f"redis://127.0.0.1:{self.port}/{db}", self.password)
        return RespClient.connect(t)

    def checksums(self) -> dict[tuple[int, bytes], tuple[str, str, int]]:
        """``checksums(self)``: every key of every database."""
        return checksums(self)

    def dbsize(self) -> int:
        with self.client() as c:
            return sum(c.keyspace().values())


@pytest.fixture
def redis_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., RedisServer]]:
    started: list[RedisServer] = []

    def make(**kwargs: Any) -> RedisServer:
        server = RedisServer(tmp_path_factory.mktemp("redis"), **kwargs).start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for s in started:
            with contextlib.suppress(Exception):
                s.stop()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    return redis_factory()


def load_sample(server: RedisServer, *, big_mib: int = 0) -> None:
    """Fill databases 0 and 3 with every data type, binary values and TTLs; ``big_mib``
    adds that many MiB of incompressible strings to db 0."""
    with server.client() as c:
        cmds: list[list[Any]] = [
            ["SET", "str:plain", "hello"],
            ["SET", "str:empty", ""],
            ["SET", "str:binary", bytes(range(256)) * 4],
            ["SET", b"key:\x00\xff\r\n binary", b"\x00\r\n\xfe"],
            ["SET", "str:int", 12345],
            ["SET", "str:large", os.urandom(100_000)],
            ["HSET", "hash:small", "a", "1", "b", b"\x00\x01"],
            ["HSET", "hash:large", *[x for i in range(300) for x in (f"f{i}", f"v{i}" * 5)]],
            ["RPUSH", "list:small", "x", "y", "z", "x"],
            ["RPUSH", "list:large", *[f"item-{i}" * 3 for i in range(2000)]],
            ["SADD", "set:ints", *range(100)],
            ["SADD", "set:strs", *[f"m{i}" for i in range(600)]],
            ["ZADD", "zset:small", 1, "a", 2.5, "b", -3, "c"],
            ["ZADD", "zset:large", *[x for i in range(500) for x in (i * 0.5, f"z{i}")]],
            ["XADD", "stream:s", "1-1", "field", "value", "n", "1"],
            ["XADD", "stream:s", "2-1", "field", "value2"],
            ["XGROUP", "CREATE", "stream:s", "workers", "0"],
            ["SET", "ttl:str", "expires", "EX", 3600],
            ["HSET", "ttl:hash", "k", "v"],
            ["EXPIRE", "ttl:hash", 7200],
            ["RPUSH", "ttl:list", "a", "b"],
            ["PEXPIRE", "ttl:list", 5_400_000],
        ]
        for reply in c.pipeline(cmds):
            assert not isinstance(reply, Exception), reply
        c.call("SELECT", 3)
        for reply in c.pipeline([["SET", "db3:key", "in db 3"], ["SADD", "db3:set", "a", "b"],
                                 ["SET", "db3:ttl", "v", "EX", 3600]]):
            assert not isinstance(reply, Exception), reply
        if big_mib:
            c.call("SELECT", 0)
            for i in range(big_mib):
                c.pipeline([["SET", f"big:{i}:{j}", os.urandom(64 * 1024)] for j in range(16)])


def _canonical(c: RespClient, key: bytes, kind: str) -> Any:
    if kind == "string":
        return c.call("GET", key)
    if kind == "hash":
        flat = c.call("HGETALL", key)
        return sorted(zip(flat[::2], flat[1::2], strict=True))
    if kind == "list":
        return c.call("LRANGE", key, 0, -1)
    if kind == "set":
        return sorted(c.call("SMEMBERS", key))
    if kind == "zset":
        return c.call("ZRANGE", key, 0, -1, "WITHSCORES")
    if kind == "stream":
        groups = [g[:2] + g[4:6] for g in c.call("XINFO", "GROUPS", key)]
        return [c.call("XRANGE", key, "-", "+"), groups]
    raise AssertionError(f"unexpected type {kind}")


def checksums(server: RedisServer) -> dict[tuple[int, bytes], tuple[str, str, int]]:
    """Every key of every database: type, SHA-256 of a canonical value form, and the TTL
    rounded to minutes (-1: none)."""
    out: dict[tuple[int, bytes], tuple[str, str, int]] = {}
    with server.client() as c:
        for db in c.keyspace():
            c.call("SELECT", db)
            cursor = b"0"
            while True:
                cursor, keys = c.call("SCAN", cursor, "COUNT", 1000)
                for key in keys:
                    kind = c.call("TYPE", key)
                    digest = hashlib.sha256(repr(_canonical(c, key, kind)).encode()).hexdigest()
                    pttl = int(c.call("PTTL", key))
                    out[(db, key)] = (kind, digest, -1 if pttl < 0 else round(pttl / 60_000))
                if cursor == b"0":
                    break
    return out
