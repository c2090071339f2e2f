"""MariaDB ``restore --clean`` over a non-empty database: loaded into a sibling schema and
swapped in (tables in one RENAME TABLE), through the real CLI against a real server."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbcrate.engines import Connection, RestoreOptions
from dbcrate.engines.mysql.engine import MySQLEngine
from tests.lib.e2e import Setup, local_target, make_setup
from tests.servers.mariadb import CLIENT, MyDatabase, TempMariaDB

#: a foreign key between tables, so the swap must keep references right
EXTRA = ("CREATE TABLE orders (id INT PRIMARY KEY, customer INT NOT NULL, "
         "FOREIGN KEY (customer) REFERENCES customers (id)) ENGINE=InnoDB;"
         "INSERT INTO orders SELECT id, id FROM customers")


def _setup(tmp: Path, db: MyDatabase, **extra: str) -> Setup:
    return make_setup(tmp, url=db.url, password=db.password, engine="mysql",
                      targets=[local_target(tmp / "backups")], job_extra=extra or None)


def _restore(setup: Setup, *flags: str) -> subprocess.CompletedProcess[str]:
    return setup.run("restore", "orders", "--latest", "--clean", "--identity",
                     str(setup.identity), *flags)


def _leftovers(server: TempMariaDB, name: str) -> list[str]:
    rows = server.sql("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA")
    return [r[0] for r in rows if r[0].startswith(name + "_dbcrate_")]


def _change(db: MyDatabase) -> None:
    db.sql("INSERT INTO customers (name) VALUES ('after'); DROP VIEW customer_names;"
           "DROP PROCEDURE bump; DROP TRIGGER customers_audit; CREATE TABLE extra (i INT);"
           "CREATE FUNCTION thrice(x INT) RETURNS INT DETERMINISTIC RETURN x * 3")


def test_clean_swap_equals_the_backup(tmp_path: Path, mariadb_db: MyDatabase) -> None:
    mariadb_db.sql(EXTRA)
    want = mariadb_db.checksums()
    setup = _setup(tmp_path, mariadb_db)
    setup.run("backup", check=True)
    _change(mariadb_db)
    assert mariadb_db.checksums() != want
    proc = _restore(setup)
    assert proc.returncode == 0, proc.stderr
    assert mariadb_db.checksums() == want
    assert _leftovers(mariadb_db.server, mariadb_db.name) == []
    # the trigger fires on the swapped-in table; the foreign key points at the live table
    mariadb_db.sql("INSERT INTO customers (name) VALUES ('new')")
    assert mariadb_db.sql("SELECT COUNT(*) FROM audit")[0][0] == "2"
    ref = mariadb_db.server.sql(
        "SELECT REFERENCED_TABLE_SCHEMA, REFERENCED_TABLE_NAME FROM "
        "information_schema.KEY_COLUMN_USAGE WHERE REFERENCED_TABLE_NAME IS NOT NULL AND "
        f"TABLE_SCHEMA = '{mariadb_db.name}'")
    assert ref == [[mariadb_db.name, "customers"]]


def test_keep_old_keeps_the_replaced_tables(tmp_path: Path, mariadb_db: MyDatabase) -> None:
    setup = _setup(tmp_path, mariadb_db)
    setup.run("backup", check=True)
    _change(mariadb_db)
    changed = mariadb_db.sql("CHECKSUM TABLE customers EXTENDED")[0][1]
    assert _restore(setup, "--keep-old").returncode == 0
    [old] = _leftovers(mariadb_db.server, mariadb_db.name)
    try:
        assert "_dbcrate_old_" in old
        kept = mariadb_db.server.sql(f"CHECKSUM TABLE `{old}`.customers EXTENDED")[0][1]
        assert kept == changed
    finally:
        mariadb_db.server.drop_database(old)


def test_failing_restore_leaves_the_original_and_no_sibling(
    tmp_path: Path, mariadb_db: MyDatabase
) -> None:
    """The client fails at the very end, after every statement of the dump ran."""
    failing = tmp_path / "failing-client"
    failing.write_text(f"""#!/bin/sh
case " $* " in
  *" --binary-mode "*) sed 's/^-- Dump completed.*/SELECT * FROM no_such_table_x;/' \\
      | {CLIENT} "$@" ;;
  *) exec {CLIENT} "$@" ;;
esac
""")
    failing.chmod(0o755)
    setup = _setup(tmp_path, mariadb_db, client_tool=str(failing))
    setup.run("backup", check=True)
    _change(mariadb_db)
    before = mariadb_db.checksums()
    proc = _restore(setup)
    assert proc.returncode == 7, proc.stderr
    assert "no_such_table_x" in proc.stderr and "was not changed" in proc.stderr
    assert "--clean" not in proc.stderr.split("hint:", 1)[1]
    assert mariadb_db.checksums() == before
    assert _leftovers(mariadb_db.server, mariadb_db.name) == []


def test_damaged_backup_leaves_the_original_and_no_sibling(
    tmp_path: Path, mariadb_db: MyDatabase
) -> None:
    setup = make_setup(tmp_path, url=mariadb_db.url, password=mariadb_db.password,
                       engine="mysql", targets=[local_target(tmp_path / "backups")],
                       compression="none", encryption="none")
    setup.run("backup", check=True)
    _change(mariadb_db)
    before = mariadb_db.checksums()
    [b] = setup.list_json("orders")
    data = tmp_path / "backups" / b["key"]
    raw = bytearray(data.read_bytes())
    at = raw.index(b"plain")
    raw[at] = ord("P")  # still valid SQL: only the final digest check sees it
    data.write_bytes(bytes(raw))
    proc = _restore(setup)
    assert proc.returncode == 5, proc.stderr
    assert mariadb_db.checksums() == before
    assert _leftovers(mariadb_db.server, mariadb_db.name) == []


def test_interrupt_while_loading_drops_the_sibling(mariadb_db: MyDatabase) -> None:
    def engine() -> MySQLEngine:
        return MySQLEngine(Connection(mariadb_db.url, mariadb_db.password))

    data = b"".join(engine().dump())
    _change(mariadb_db)
    before = mariadb_db.checksums()

    def chunks() -> Iterator[bytes]:
        yield data[: len(data) // 2]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        engine().restore(chunks(), RestoreOptions(clean=True))
    assert mariadb_db.checksums() == before
    assert _leftovers(mariadb_db.server, mariadb_db.name) == []
