"""MySQL/MariaDB engine against a real MariaDB server: round trips through the real CLI,
failed and damaged restores, a truncated dump, and secrets (the private defaults file is
0600 in a 0700 dir and goes; odd passwords survive it). (Killed dump tool, bad
credentials, unreachable server, non-empty target and argv: tests/contract/test_engine.py.)"""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dbcrate.engines import Connection
from dbcrate.engines.mysql.engine import MySQLEngine, dump_options
from dbcrate.engines.mysql.url import MyTarget
from dbcrate.errors import ConfigError
from tests.lib.e2e import Setup, local_target, make_setup, restore
from tests.lib.procs import files_under
from tests.servers.mariadb import ALL_BYTES, CLIENT, MyDatabase, TempMariaDB, new_db_name

DUMP = "/usr/bin/mariadb-dump"
CANARY = 'canary-My "pw" #1 \\ \'q\' 7f3a'


def _setup(tmp: Path, db: MyDatabase, *, compression: str = "zstd", encryption: str = "age",
           job_extra: dict[str, str] | None = None) -> Setup:
    return make_setup(tmp, url=db.url, password=db.password, engine="mysql",
                      targets=[local_target(tmp / "backups")], compression=compression,
                      encryption=encryption, job_extra=job_extra)


def _script(path: Path, body: str) -> str:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)
    return str(path)


# -- round trips -------------------------------------------------------------------------------


MODES = [("zstd", "age"), ("gzip", "aes-256-gcm"), ("none", "none")]


@pytest.mark.parametrize(("compression", "encryption"), MODES, ids=[f"{c}-{e}" for c, e in MODES])
def test_round_trip(tmp_path: Path, mariadb_db: MyDatabase, compression: str,
                    encryption: str) -> None:
    server = mariadb_db.server
    setup = _setup(tmp_path, mariadb_db, compression=compression, encryption=encryption)
    source = mariadb_db.checksums()
    kinds = {k.split()[0] for k in source}
    assert kinds >= {"TABLE", "DATA", "VIEW", "TRIGGER", "PROCEDURE", "FUNCTION", "EVENT"}

    setup.run("backup", "orders", check=True)
    [b] = setup.list_json("orders")
    assert b["engine"] == "mysql" and b["tool"] == "mariadb-dump"
    assert b["server_version"] == server.version and "MariaDB" in b["server_version"]
    assert b["tool_version"].startswith(server.version.split("-")[0])
    assert b["stages"] == [s for s in (compression, encryption) if s != "none"]
    assert ".sql" in b["key"]

    # an odd target name, percent-encoded in the --to url
    restored = new_db_name("restored é-x") + " $"
    try:
        restore(setup, to=server.url(restored), check=False)
        assert server.database_exists(restored)
        assert MyDatabase(server, restored).checksums() == source
        blob = MyDatabase(server, restored).sql("SELECT HEX(data) FROM blobs WHERE id = 1")
        assert bytes.fromhex(blob[0][0]) == ALL_BYTES
        emoji = MyDatabase(server, restored).sql("SELECT HEX(name) FROM customers WHERE id = 1")
        assert bytes.fromhex(emoji[0][0]).decode() == "Zoë 🐘"
    finally:
        server.drop_database(restored)


@pytest.mark.parametrize("existing", [False, True], ids=["new-db", "existing-empty-db"])
def test_failed_restore_leaves_target_as_it_was(
    tmp_path: Path, mariadb_db: MyDatabase, mariadb_db_name: str, existing: bool
) -> None:
    """The client fails at the very end (after every statement of the dump ran): a database
    created for the restore is dropped; an empty one is emptied again, same collation."""
    server = mariadb_db.server
    failing = _script(tmp_path / "failing-client", f"""
case " $* " in
  *" --binary-mode "*) sed 's/^-- Dump completed.*/SELECT * FROM no_such_table_x;/' \\
      | {CLIENT} "$@" ;;
  *) exec {CLIENT} "$@" ;;
esac
""")
    setup = _setup(tmp_path, mariadb_db, job_extra={"client_tool": failing})
    setup.run("backup", "orders", check=True)
    if existing:
        server.sql(f"CREATE DATABASE `{mariadb_db_name}` COLLATE utf8mb4_swedish_ci")
    proc = restore(setup, to=server.url(mariadb_db_name), check=False)
    assert proc.returncode == 7, proc.stderr
    assert "no_such_table_x" in proc.stderr
    assert server.database_exists(mariadb_db_name) is existing
    if existing:
        assert MyDatabase(server, mariadb_db_name).checksums() == {}
        rows = server.sql("SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA "
                          f"WHERE SCHEMA_NAME = '{mariadb_db_name}'")
        assert rows == [["utf8mb4_swedish_ci"]]


def test_damaged_backup_leaves_no_database(tmp_path: Path, mariadb_db: MyDatabase,
                                           mariadb_db_name: str) -> None:
    """The digest check fails at the end of the stream: the database created for the
    restore is dropped again."""
    setup = _setup(tmp_path, mariadb_db, compression="none", encryption="none")
    setup.run("backup", "orders", check=True)
    [b] = setup.list_json("orders")
    data = tmp_path / "backups" / b["key"]
    raw = bytearray(data.read_bytes())
    at = raw.index(b"Zo")
    raw[at : at + 2] = b"Xo"
    data.write_bytes(bytes(raw))
    proc = restore(setup, to=mariadb_db.server.url(mariadb_db_name), check=False)
    assert proc.returncode == 5, proc.stderr
    assert not mariadb_db.server.database_exists(mariadb_db_name)


# -- faults ------------------------------------------------------------------------------------


def test_dump_without_completion_trailer_fails(tmp_path: Path, mariadb_db: MyDatabase) -> None:
    """A dump tool that exits 0 with its trailer cut off (stand-in for a tool failure)."""
    truncating = _script(tmp_path / "truncating-dump", f"""
case "$1" in --version) exec {DUMP} --version ;; esac
{DUMP} "$@" | head -c -200
""")
    setup = _setup(tmp_path, mariadb_db, job_extra={"dump_tool": truncating})
    proc = setup.run("backup", "orders")
    assert proc.returncode == 3, proc.stderr
    assert "completion trailer" in proc.stderr and "Traceback" not in proc.stderr
    assert files_under(tmp_path / "backups") == []
    assert setup.list_json("orders") == []


# -- secrets -----------------------------------------------------------------------------------


def test_defaults_file_is_private_and_removed() -> None:
    target = MyTarget.parse("mysql://u%40x@db.example:3307/odd%2Fname?ssl-ca=/ca.pem", CANARY)
    assert (target.user, target.host, target.port, target.database) == (
        "u@x", "db.example", 3307, "odd/name")
    with target.defaults_file() as path:
        p = Path(path)
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
        assert stat.S_IMODE(p.parent.stat().st_mode) == 0o700
        text = p.read_text()
        assert "loose-ssl-ca=" in text and "port=3307" in text
    assert not p.exists() and not p.parent.exists()


def test_odd_password_reaches_the_server(mariadb_server: TempMariaDB) -> None:
    """Quotes, #, backslash and spaces survive the defaults file."""
    quoted = CANARY.replace("\\", "\\\\").replace("'", "\\'")
    mariadb_server.sql(f"CREATE USER 'odd'@'127.0.0.1' IDENTIFIED BY '{quoted}'")
    try:
        engine = MySQLEngine(Connection(mariadb_server.url("mysql", user="odd"), CANARY))
        assert engine._query("SELECT CURRENT_USER()") == [["odd@127.0.0.1"]]
    finally:
        mariadb_server.sql("DROP USER 'odd'@'127.0.0.1'")


@pytest.mark.parametrize("url", ["postgresql://x@h/db", "mysql://h:3306/", "mysql://h/a/b",
                                 "mysql://h/db?sslmode=require"])
def test_bad_urls(url: str) -> None:
    with pytest.raises(ConfigError):
        MyTarget.parse(url)


@pytest.mark.parametrize("opts", [["--password=x"], ["-pxyz"], ["--databases"], ["--compact"],
                                  ["--skip-comments"], ["--comments=0"], ["--result-file=/tmp/x"],
                                  ["quick"]])
def test_dump_options_rejected(opts: list[str]) -> None:
    with pytest.raises(ConfigError):
        dump_options(opts)
    ok = ["--single-transaction", "--skip-triggers", "--skip-dump-date", "--comments"]
    assert dump_options(ok) == tuple(ok)


def test_forbidden_dump_option_is_a_config_error(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, url="mysql://root@127.0.0.1:9/db", password="x",
                       engine="mysql", targets=[local_target(tmp_path / "backups")],
                       job_extra={"dump_options": ["--single-transaction", "--compact"]})
    proc = setup.run("backup", "orders")
    assert proc.returncode == 2, proc.stderr
    assert "dump_options" in proc.stderr and "--compact" in proc.stderr
