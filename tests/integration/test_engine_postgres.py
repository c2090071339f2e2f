"""PostgresEngine against a real PostgreSQL 17 sandbox server."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from dbcrate import pgbin
from dbcrate.engines import Connection, RestoreOptions, open_engine
from dbcrate.engines.postgres.engine import PostgresEngine
from dbcrate.errors import (
    AuthenticationFailed,
    DatabaseError,
    DatabaseUnreachable,
    DigestMismatch,
    DumpFailed,
    RestoreFailed,
    RestoreRefused,
    ToolNotFound,
)
from dbcrate.model import EngineInfo
from dbcrate.sandbox import TempPostgres, free_port, load_sample
from tests.lib.procs import cmdline_bytes, descendants
from tests.servers.postgres import PgDatabase

SRC = Path(__file__).resolve().parents[2] / "src"
BACKUP = EngineInfo(engine="postgres", server_version="17.11")


def fresh_python(code: str, stdin: str) -> str:
    """The stdout of ``code`` run in a new interpreter on this checkout (what it imports
    is its own), ``stdin`` on its standard input."""
    return subprocess.run([sys.executable, "-c", code], input=stdin, text=True,
                          capture_output=True, check=True,
                          env={**os.environ, "PYTHONPATH": str(SRC)}).stdout


def engine(db: PgDatabase, **options: object) -> PostgresEngine:
    e = open_engine("postgres", db.connection(**options))
    assert isinstance(e, PostgresEngine)
    return e


def dump_bytes(db: PgDatabase) -> bytes:
    return b"".join(engine(db).dump())


def pieces(data: bytes, size: int = 64 * 1024) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def cmdlines(name: str) -> list[str]:
    """The argv (joined) of every descendant of this process whose argv[0] ends with ``name``."""
    out = []
    for pid in descendants(zombies=True):
        argv = cmdline_bytes(pid).split(b"\0")
        if argv and argv[0].endswith(name.encode()):
            out.append(b" ".join(argv).decode("utf-8", "replace"))
    return out


def add_big_table(db: PgDatabase, rows: int = 400_000) -> None:
    db.server.psql(
        "CREATE TABLE big AS SELECT i, repeat(md5(i::text), 4) AS pad "
        f"FROM generate_series(1, {int(rows)}) AS i",
        db.name,
    )


def is_empty(server: TempPostgres, name: str) -> bool:
    rows = server.psql(
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT LIKE 'pg\\_%' AND n.nspname <> 'information_schema'",
        name,
    )
    return rows == [(0,)]


# -- probe ---------------------------------------------------------------------------------


def test_probe_reports_server_version_and_same_major_tool(pg_db: PgDatabase) -> None:
    info = engine(pg_db).probe()
    assert info.engine == "postgres"
    assert info.server_version == pg_db.server.version
    assert info.tool == "pg_dump"
    assert info.tool_version.split(".")[0] == info.server_version.split(".")[0] == "17"
    assert info.database == pg_db.name


@pytest.mark.parametrize("bin_dir", [False, True], ids=["found", "pg_bin_dir"])
def test_probe_asks_with_psql_and_never_loads_psycopg(pg_db: PgDatabase, bin_dir: bool) -> None:
    """A backup's probe (and its URL parsing) runs without psycopg: psql of pg_bin_dir, a
    system install or PATH reads the version (~85 ms and ~25 MiB less per backup)."""
    options = {"pg_bin_dir": str(pg_db.server.bin_dir)} if bin_dir else {}
    code = (
        "import json, sys\n"
        "from dbcrate.engines import Connection, open_engine\n"
        f"e = open_engine('postgres', Connection({pg_db.url!r}, sys.stdin.read(), {options!r}))\n"
        "info = e.probe()\n"
        "print(json.dumps([info.server_version, bool(info.superuser),"
        " 'psycopg' in sys.modules]))\n")
    out = fresh_python(code, stdin=pg_db.password)
    assert json.loads(out) == [pg_db.server.version, True, False]


def test_wrong_password_is_authentication_failed_without_the_password(
    pg_db: PgDatabase,
) -> None:
    canary = "canary-" + secrets.token_hex(8)
    e = open_engine("postgres", Connection(pg_db.url, canary))
    with pytest.raises(AuthenticationFailed) as info:
        e.probe()
    assert canary not in str(info.value) and canary not in info.value.hint
    with pytest.raises(AuthenticationFailed) as info2:
        list(e.dump())
    assert canary not in str(info2.value)


def test_unreachable_port_is_database_unreachable(pg_db: PgDatabase) -> None:
    port = free_port()
    url = f"postgresql://postgres@127.0.0.1:{port}/{pg_db.name}"
    with pytest.raises(DatabaseUnreachable, match=f"127.0.0.1:{port}"):
        open_engine("postgres", Connection(url, pg_db.password)).probe()


def test_dump_of_missing_database_is_database_error(pg_server: TempPostgres) -> None:
    db = PgDatabase(pg_server, "no_such_db")
    with pytest.raises(DatabaseError, match="no_such_db does not exist") as info:
        list(engine(db).dump())
    assert not isinstance(info.value, DumpFailed)


def test_pg_bin_dir_of_another_major_is_refused(pg_db: PgDatabase) -> None:
    other = pgbin.ensure(16) / "bin"
    with pytest.raises(ToolNotFound, match="same major"):
        engine(pg_db, pg_bin_dir=str(other)).probe()
    info = engine(pg_db, pg_bin_dir=str(pg_db.server.bin_dir)).probe()
    assert info.tool_version == pg_db.server.version


def test_no_tools_and_fetching_disabled_says_how_to_fix(pg_db: PgDatabase, tmp_path: Path) -> None:
    if Path("/usr/lib/postgresql/17/bin/pg_dump").exists():
        pytest.skip("a system pg_dump 17 is installed")
    e = engine(pg_db, cache_dir=str(tmp_path), fetch_tools=False)
    with pytest.raises(ToolNotFound) as info:
        e.probe()
    assert pg_db.server.version in str(info.value)
    assert "dbcrate tools fetch 17" in info.value.hint


# -- dump and restore ----------------------------------------------------------------------


def test_round_trip_into_a_new_database(pg_db: PgDatabase, pg_db_name: str) -> None:
    data = dump_bytes(pg_db)
    assert data.startswith(b"PGDMP")
    target = PgDatabase(pg_db.server, pg_db_name)
    engine(target).check_restore_target(BACKUP, RestoreOptions())
    engine(target).restore(iter(pieces(data)), RestoreOptions())
    assert target.checksums() == pg_db.checksums()
    assert "public.Order Items" in target.checksums()


def test_restore_into_a_new_database_never_loads_psycopg(
        pg_db: PgDatabase, pg_db_name: str, tmp_path: Path) -> None:
    """With a psql at hand, the checks, CREATE DATABASE and pg_restore of a restore into
    a new database run without psycopg (its ~85 ms and ~25 MiB), and the data arrives."""
    dump = tmp_path / "db.dump"
    dump.write_bytes(dump_bytes(pg_db))
    target = PgDatabase(pg_db.server, pg_db_name)
    code = (
        "import sys\n"
        "from dbcrate.engines import Connection, RestoreOptions, open_engine\n"
        "from dbcrate.model import EngineInfo\n"
        f"e = open_engine('postgres', Connection({target.url!r}, sys.stdin.read()))\n"
        "e.check_restore_target(EngineInfo(engine='postgres', server_version='17.11'),"
        " RestoreOptions())\n"
        f"data = open({str(dump)!r}, 'rb').read()\n"
        "e.restore(iter([data[i:i + 65536] for i in range(0, len(data), 65536)]),"
        " RestoreOptions())\n"
        "print('psycopg' in sys.modules)\n")
    out = fresh_python(code, stdin=pg_db.password)
    assert out.strip() == "False"
    assert target.checksums() == pg_db.checksums()


@pytest.mark.parametrize("name", ["it's \"odd\" \\ name", "naïve-ü"])
def test_the_maintenance_probe_sees_whether_any_name_exists(
        pg_server: TempPostgres, name: str) -> None:
    """The restore's one psql call through the maintenance database names the target by
    its hex bytes: quotes, backslashes and non-ASCII neither break the query nor match
    another database."""
    from dbcrate.engines.postgres.connect import ask_psql_exists
    from dbcrate.engines.postgres.tools import probe_psql
    from dbcrate.engines.postgres.url import PgTarget

    psql = probe_psql({"pg_bin_dir": str(pg_server.bin_dir)})
    via = PgTarget.parse(pg_server.url("postgres"), pg_server.password)
    pg_server.drop_database(name)
    asked = ask_psql_exists(psql, via, name)
    assert asked is not None and asked[0] // 10000 == 17 and asked[2] is False
    pg_server.create_database(name)
    try:
        asked = ask_psql_exists(psql, via, name)
        assert asked is not None and asked[2] is True
        assert ask_psql_exists(psql, via, name + "x") == (asked[0], asked[1], False)
    finally:
        pg_server.drop_database(name)


@pytest.mark.parametrize("maintenance", ["no_such_maintenance_db", "template0"])
def test_an_unusable_maintenance_database_falls_back_to_the_target(
        pg_db: PgDatabase, pg_db_name: str, maintenance: str) -> None:
    """A maintenance database that is missing, or refuses connections (template0), makes
    the version and existence probe ask the target itself: an existing empty database is
    restored into as before, and a missing one is refused naming the maintenance
    database (it is what creates one), with nothing created."""
    data = dump_bytes(pg_db)
    target = PgDatabase(pg_db.server, pg_db_name)
    with pytest.raises(DatabaseError, match=maintenance):
        engine(target, maintenance_db=maintenance).check_restore_target(
            BACKUP, RestoreOptions())
    assert not target.exists()
    pg_db.server.create_database(pg_db_name)
    e = engine(target, maintenance_db=maintenance)
    e.check_restore_target(BACKUP, RestoreOptions())
    e.restore(iter(pieces(data)), RestoreOptions())
    assert target.checksums() == pg_db.checksums()


def test_a_role_without_createdb_is_told_so(pg_db: PgDatabase, pg_db_name: str) -> None:
    role = f"r_{secrets.token_hex(4)}"
    password = secrets.token_hex(8)
    with pg_db.server.connect("postgres") as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        url = f"postgresql://{role}@127.0.0.1:{pg_db.server.port}/{pg_db_name}"
        e = open_engine("postgres", Connection(url, password))
        with pytest.raises(RestoreFailed, match="permission denied to create database") as info:
            e.restore(iter(pieces(dump_bytes(pg_db))), RestoreOptions())
        assert info.value.hint == "create the database yourself, or grant the user CREATEDB"
        assert password not in str(info.value)
        assert not pg_db.server.database_exists(pg_db_name)
    finally:
        with pg_db.server.connect("postgres") as conn:
            conn.execute(f"DROP ROLE {role}")


def test_clean_restore_overwrites_a_non_empty_database(
    pg_db: PgDatabase, pg_db_name: str, caplog: pytest.LogCaptureFixture
) -> None:
    target = PgDatabase(pg_db.server, pg_db_name)
    pg_db.server.create_database(pg_db_name)
    load_sample(target.url, password=target.password, scale=7)
    engine(target).restore(iter(pieces(dump_bytes(pg_db))), RestoreOptions(clean=True))
    # the archive's database-level entries (of another name) were read and applied
    assert [r.message for r in caplog.records if r.levelname == "WARNING"] == []
    # the whole database is replaced (a sibling swapped in), the target's own large
    # objects included
    assert target.checksums() == pg_db.checksums()
    assert not [n for n in pg_db.server.psql("SELECT datname FROM pg_database")
                if "_dbcrate_" in n[0]]


def test_pg_dump_killed_mid_stream_is_dump_failed(pg_db: PgDatabase) -> None:
    add_big_table(pg_db)
    stream = engine(pg_db).dump()
    next(stream)
    [pid] = [p for p in descendants(zombies=True)
             if Path(f"/proc/{p}/exe").resolve().name == "pg_dump"]
    killer = threading.Thread(target=os.kill, args=(pid, signal.SIGKILL))
    killer.start()
    killer.join()
    with pytest.raises(DumpFailed, match="pg_dump was killed by SIGKILL"):
        for _ in stream:
            pass


def test_restore_into_non_empty_database_is_refused_and_changes_nothing(
    pg_db: PgDatabase,
) -> None:
    before = pg_db.checksums()
    data = dump_bytes(pg_db)
    with pytest.raises(RestoreRefused, match=f"{pg_db.name} .* is not empty"):
        engine(pg_db).check_restore_target(BACKUP, RestoreOptions())
    consumed = []

    def chunks() -> Iterator[bytes]:
        consumed.append(True)
        yield from pieces(data)

    with pytest.raises(RestoreRefused):
        engine(pg_db).restore(chunks(), RestoreOptions())
    assert consumed == []
    assert pg_db.checksums() == before


def failing(data: bytes, stop_after: int, error: Exception) -> Iterable[bytes]:
    """The archive in 16 KiB pieces, raising ``error`` after ``stop_after`` of them. At the
    very end it raises only after a pause (a slow final digest check), which gives a
    pg_restore that had seen every byte the time to commit."""
    parts = pieces(data, 16 * 1024)
    yield from parts[:stop_after]
    if stop_after >= len(parts):
        time.sleep(1.5)
    raise error


@pytest.mark.parametrize("where", ["midway", "after the last byte"])
def test_failing_chunks_leave_an_existing_empty_target_empty(
    pg_db: PgDatabase, pg_db_name: str, where: str
) -> None:
    data = dump_bytes(pg_db)
    n = len(pieces(data, 16 * 1024))
    stop = n // 2 if where == "midway" else n
    pg_db.server.create_database(pg_db_name)
    target = PgDatabase(pg_db.server, pg_db_name)
    with pytest.raises(DigestMismatch, match="boom"):
        engine(target).restore(failing(data, stop, DigestMismatch("boom")), RestoreOptions())
    assert target.exists()
    assert is_empty(pg_db.server, pg_db_name)
    engine(target).check_restore_target(BACKUP, RestoreOptions())
    assert cmdlines("pg_restore") == []


@pytest.mark.parametrize("where", ["midway", "after the last byte"])
def test_failing_chunks_drop_a_database_the_restore_created(
    pg_db: PgDatabase, pg_db_name: str, where: str
) -> None:
    data = dump_bytes(pg_db)
    n = len(pieces(data, 16 * 1024))
    target = PgDatabase(pg_db.server, pg_db_name)
    with pytest.raises(ValueError, match="decryption failed"):
        engine(target).restore(
            failing(data, n // 2 if where == "midway" else n, ValueError("decryption failed")),
            RestoreOptions(),
        )
    assert not target.exists()


def test_garbage_input_is_restore_failed_and_created_database_dropped(
    pg_db: PgDatabase, pg_db_name: str
) -> None:
    target = PgDatabase(pg_db.server, pg_db_name)
    with pytest.raises(RestoreFailed, match="pg_restore exited with status 1"):
        engine(target).restore(iter([b"this is not a pg_dump archive" * 100]), RestoreOptions())
    assert not target.exists()


# -- secrets -------------------------------------------------------------------------------


@pytest.fixture
def canary_db(pg_db: PgDatabase) -> Iterator[tuple[PgDatabase, str, str]]:
    """``pg_db`` reached as a role whose password is a unique canary string."""
    canary = "canary-" + secrets.token_hex(12)
    role = "canary_" + secrets.token_hex(4)
    pg_db.server.psql(f"CREATE ROLE {role} LOGIN SUPERUSER PASSWORD '{canary}'")
    try:
        yield pg_db, role, canary
    finally:
        pg_db.server.psql(f"DROP ROLE IF EXISTS {role}")


def test_password_never_in_argv_nor_errors(
    canary_db: tuple[PgDatabase, str, str], pg_db_name: str
) -> None:
    db, role, canary = canary_db
    add_big_table(db, 200_000)
    url = f"postgresql://{role}@127.0.0.1:{db.server.port}/{db.name}?sslmode=disable"
    seen: list[str] = []
    stream = open_engine("postgres", Connection(url, canary)).dump()
    chunks = [next(stream)]
    seen += cmdlines("pg_dump")
    chunks += list(stream)
    assert len(seen) == 1 and "-Fc" in seen[0]

    target_url = f"postgresql://{role}@127.0.0.1:{db.server.port}/{pg_db_name}"

    def watched() -> Iterator[bytes]:
        for i, chunk in enumerate(chunks):
            if i == 1:
                seen.extend(cmdlines("pg_restore"))
            yield chunk

    open_engine("postgres", Connection(target_url, canary)).restore(watched(), RestoreOptions())
    assert len(seen) == 2 and "--single-transaction" in seen[1]
    assert all(canary not in s for s in seen)

    errors: list[Exception] = []
    for e in (
        lambda: open_engine("postgres", Connection(target_url, canary)).check_restore_target(
            BACKUP, RestoreOptions()
        ),
        lambda: open_engine("postgres", Connection(target_url, canary)).restore(
            iter([b"junk"]), RestoreOptions()
        ),
        lambda: list(open_engine("postgres", Connection(url + "&x=1", canary)).dump()),
    ):
        with pytest.raises(Exception) as info:  # any error: its text is checked below
            e()
        errors.append(info.value)
    assert len(errors) == 3
    for err in errors:
        assert canary not in str(err) and canary not in getattr(err, "hint", "")
