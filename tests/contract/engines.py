"""The engines the Engine contract (tests/contract/test_engine.py) runs against: one
``EngineHarness`` per engine in ``ENGINE_HARNESSES`` (postgres, mariadb, redis on real
servers; mongodb on the stand-in tools). Adding an engine is one entry.

A harness opens a loaded ``Database`` (``url``, ``password``, ``checksums()``) from the
fixtures in tests/servers/, makes it big enough that its dump tool runs a while, gives
places to restore into (a fresh one, or the database itself), makes a canary login, and
says which faults it can stage and what the errors say."""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pytest

from tests.servers.mariadb import MyDatabase
from tests.servers.mariadb import new_db_name as new_my_name
from tests.servers.mongodb import Tools
from tests.servers.postgres import PgDatabase, new_db_name
from tests.servers.redis import RedisServer, load_sample

#: the wrong password every "wrong password" fault and canary run uses
WRONG = "canary-Wrong-1b2c3d4e"


class Database(Protocol):
    """What every database fixture in tests/servers/ exposes."""

    @property
    def url(self) -> str: ...

    @property
    def password(self) -> str: ...

    def checksums(self) -> Mapping[Any, Any]: ...


@dataclass
class Place:
    """Where a restore goes: ``--to`` (None: the job's own database), the password for it
    (None: the job's), and the checksums of what is there."""

    to: str | None
    password: str | None
    checksums: Callable[[], Mapping[Any, Any]]


@dataclass
class Canary:
    """A login whose password is a canary: back up from ``url`` with ``password``,
    restore into ``place``; ``secrets`` must never be seen anywhere."""

    url: str
    password: str
    place: Place
    secrets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Fault:
    """A database fault: the job's url and password, and what the error says (lowercase
    texts are looked for in the lowercased stderr, others as they are)."""

    url: Callable[[Any], str]
    password: Callable[[Any], str]
    says: tuple[str, ...]


@dataclass(frozen=True)
class EngineHarness:
    name: str  #: the test id
    engine: str  #: the config's engine name
    dump_tool: str  #: a text in the dump tool's argv (and in its error messages)
    restore_tool: bytes | None  #: a text in the restore tool's argv (None: no tool)
    source: Callable[[pytest.FixtureRequest], Any]  #: a database loaded with the sample
    grow: Callable[[pytest.FixtureRequest, Any], None]  #: make its dump run a while
    fresh: Callable[[pytest.FixtureRequest, Any], Place]  #: an empty place to restore into
    in_place: Callable[[Any], Place]  #: the database itself as a restore target
    dirty: Callable[[Any], None]  #: change the database (after its backup)
    canary: Callable[[pytest.FixtureRequest, Any], Canary]
    faults: dict[str, Fault]
    refusal_says: tuple[str, ...]  #: what refusing a non-empty target says
    kill_says: str = "{tool} was killed by SIGKILL"
    job_extra: Callable[[Any, bool], dict[str, object]] = lambda _db, _check: {}
    env: Callable[[Any], dict[str, str]] = lambda _db: {}
    reject_env: dict[str, str] = field(default_factory=dict)  #: make the login fail
    kill_env: dict[str, str] = field(default_factory=dict)  #: keep the dump tool running
    #: find the dump tool by its argv (a script: its command name is the interpreter's)
    kill_by_argv: bool = False


# -- postgres ---------------------------------------------------------------------------------


def _pg_grow(_request: pytest.FixtureRequest, db: PgDatabase) -> None:
    """~25 MiB of poorly compressible rows: the dump takes a while, spans S3 parts."""
    with db.server.connect(db.name) as conn:
        conn.execute(
            "CREATE TABLE filler AS SELECT i, md5(i::text) || repeat(md5((i * 7)::text), 6) AS t"
            " FROM generate_series(1, 110000) AS i")


def _pg_fresh(request: pytest.FixtureRequest, db: PgDatabase) -> Place:
    name: str = request.getfixturevalue("pg_db_name")
    return Place(db.server.url(name), None, PgDatabase(db.server, name).checksums)


def _pg_dirty(db: PgDatabase) -> None:
    with db.server.connect(db.name) as conn:
        conn.execute("UPDATE texts SET body = 'changed after backup'")


def _pg_canary(request: pytest.FixtureRequest, db: PgDatabase) -> Canary:
    password = "canary-Pw-" + secrets.token_hex(6)
    role = "canary_" + secrets.token_hex(4)
    restored = new_db_name("canary")
    with db.server.connect("postgres") as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{password}'")

    def drop() -> None:
        db.server.drop_database(restored)
        with db.server.connect("postgres") as conn:
            conn.execute(f"DROP ROLE {role}")

    request.addfinalizer(drop)
    place = Place(db.server.url(restored).replace("postgres@", f"{role}@", 1), None,
                  PgDatabase(db.server, restored).checksums)
    return Canary(db.url.replace("postgres@", f"{role}@", 1), password, place)


POSTGRES = EngineHarness(
    name="postgres", engine="postgres", dump_tool="pg_dump",
    restore_tool=b"pg_restore",
    source=lambda r: r.getfixturevalue("pg_db"), grow=_pg_grow, fresh=_pg_fresh,
    in_place=lambda db: Place(None, None, db.checksums), dirty=_pg_dirty, canary=_pg_canary,
    faults={
        "wrong password": Fault(lambda db: db.url, lambda _db: WRONG, ("authentication",)),
        "unreachable": Fault(lambda _db: "postgresql://postgres@127.0.0.1:9/nothing",
                             lambda db: db.password, ("cannot connect",)),
        "missing database": Fault(lambda db: db.server.url("no_such_database"),
                                  lambda db: db.password, ("no_such_database",)),
    },
    refusal_says=("not empty", "--clean"),
    kill_says="pg_dump",
)


# -- mariadb ----------------------------------------------------------------------------------

MY_CANARY = 'canary-My "pw" #1 \\ \'q\' '


def _my_grow(_request: pytest.FixtureRequest, db: MyDatabase) -> None:
    """~30 MiB of poorly compressible rows: the dump takes a while."""
    db.sql("CREATE TABLE filler (i INT PRIMARY KEY, t TEXT) ENGINE=InnoDB;"
           "INSERT INTO filler SELECT seq, CONCAT(MD5(seq), REPEAT(MD5(seq * 7), 6))"
           " FROM seq_1_to_130000")


def _my_fresh(request: pytest.FixtureRequest, db: MyDatabase) -> Place:
    name: str = request.getfixturevalue("mariadb_db_name")
    return Place(db.server.url(name), None, MyDatabase(db.server, name).checksums)


def _my_dirty(db: MyDatabase) -> None:
    db.sql("INSERT INTO customers (name) VALUES ('after'); DROP VIEW customer_names;"
           "DROP PROCEDURE bump")


def _my_canary(request: pytest.FixtureRequest, db: MyDatabase) -> Canary:
    server = db.server
    password = MY_CANARY + secrets.token_hex(4)
    user = "canary_" + secrets.token_hex(4)
    quoted = password.replace("\\", "\\\\").replace("'", "\\'")
    server.sql(f"CREATE USER '{user}'@'127.0.0.1' IDENTIFIED BY '{quoted}';"
               f"GRANT ALL ON *.* TO '{user}'@'127.0.0.1'")
    restored = new_my_name("canary")

    def drop() -> None:
        server.drop_database(restored)
        server.sql(f"DROP USER '{user}'@'127.0.0.1'")

    request.addfinalizer(drop)
    place = Place(server.url(restored, user=user), None,
                  MyDatabase(server, restored).checksums)
    return Canary(server.url(db.name, user=user), password, place)


MARIADB = EngineHarness(
    name="mariadb", engine="mysql", dump_tool="mariadb-dump",
    restore_tool=b"--binary-mode",
    source=lambda r: r.getfixturevalue("mariadb_db"), grow=_my_grow, fresh=_my_fresh,
    in_place=lambda db: Place(None, None, db.checksums), dirty=_my_dirty, canary=_my_canary,
    faults={
        "wrong password": Fault(lambda db: db.url, lambda _db: WRONG, ("access denied",)),
        "unreachable": Fault(lambda _db: "mysql://root@127.0.0.1:9/nothing",
                             lambda db: db.password, ("cannot connect",)),
        "missing database": Fault(lambda db: db.server.url("no_such_database"),
                                  lambda db: db.password, ("no_such_database does not exist",)),
    },
    refusal_says=("not empty", "nothing was changed"),
)


# -- redis ------------------------------------------------------------------------------------


def _redis_source(request: pytest.FixtureRequest) -> RedisServer:
    server: RedisServer = request.getfixturevalue("redis_factory")()
    load_sample(server)
    return server


def _redis_grow(_request: pytest.FixtureRequest, server: RedisServer) -> None:
    """24 MiB of incompressible strings."""
    with server.client() as c:
        for i in range(24):
            c.pipeline([["SET", f"big:{i}:{j}", os.urandom(64 * 1024)] for j in range(16)])


def _redis_fresh(request: pytest.FixtureRequest, _server: RedisServer) -> Place:
    target: RedisServer = request.getfixturevalue("redis_factory")()
    return Place(target.url, target.password, target.checksums)


def _redis_dirty(server: RedisServer) -> None:
    with server.client() as c:
        c.call("SET", "str:plain", "other")
        c.call("SET", "only-in-target", "x")


def _redis_canary(request: pytest.FixtureRequest, server: RedisServer) -> Canary:
    place = _redis_fresh(request, server)
    assert place.password is not None
    return Canary(server.url, server.password, place, secrets=[place.password])


REDIS = EngineHarness(
    name="redis", engine="redis", dump_tool="redis-cli",
    restore_tool=None,
    source=_redis_source, grow=_redis_grow, fresh=_redis_fresh,
    in_place=lambda s: Place(None, None, s.checksums), dirty=_redis_dirty, canary=_redis_canary,
    faults={
        "wrong password": Fault(lambda s: s.url, lambda _s: WRONG, ("rejected",)),
        "unreachable": Fault(lambda _s: "redis://127.0.0.1:9/0", lambda s: s.password,
                             ("cannot connect",)),
    },
    refusal_says=("not empty", "--clean"),
)


# -- mongodb (the stand-in tools) -------------------------------------------------------------


def _mongo_grow(_request: pytest.FixtureRequest, tools: Tools) -> None:
    """Data without the password in it (the sample has it, to see it passes through)."""
    tools.source.write_bytes(os.urandom(4 << 20))


def _mongo_dirty(tools: Tools) -> None:
    tools.sink.write_bytes(b"a collection restored earlier")


def _mongo_canary(_request: pytest.FixtureRequest, tools: Tools) -> Canary:
    from urllib.parse import quote

    return Canary(tools.url, tools.password, Place(None, None, tools.restored),
                  secrets=[quote(tools.password, safe=""), "s3cr3t"])


MONGODB = EngineHarness(
    name="mongodb", engine="mongodb", dump_tool="mongodump",
    restore_tool=b"mongorestore",
    source=lambda r: r.getfixturevalue("tools"), grow=_mongo_grow,
    fresh=lambda _r, t: Place(None, None, t.restored),
    in_place=lambda t: Place(None, None, t.restored), dirty=_mongo_dirty, canary=_mongo_canary,
    faults={
        "wrong password": Fault(lambda t: t.url, lambda _t: WRONG,
                                ("rejected user 'backup'", "Authentication failed")),
    },
    refusal_says=("not empty", "nothing was changed"),
    job_extra=lambda t, check: t.options(mongosh=check),
    env=lambda t: t.env(),
    reject_env={"STANDIN_AUTH_FAIL": "1"},
    kill_env={"STANDIN_HANG_AFTER": str(1 << 20)}, kill_by_argv=True,
)

#: every engine the contract runs against
ENGINE_HARNESSES = [POSTGRES, MARIADB, REDIS, MONGODB]
