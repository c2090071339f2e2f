"""MariaDB fixtures: a real ``mariadbd`` from Debian's packages, started per session on a
free loopback port with a temporary datadir, never the system instance. The server is
``dbcrate.sandbox.mariadb.TempMariaDB`` (the verifier's own; as root it runs as the
``dbcrate-sandbox`` user).

- ``mariadb_server`` (session): a started ``TempMariaDB`` (root password
  ``MARIADB_PASSWORD``), stopped and removed at the end.
- ``mariadb_db`` (function): a fresh database loaded with ``SAMPLE_SQL`` (utf8mb4 text
  with emoji, a blob of all 256 byte values, a view, a trigger, a procedure, a function
  and an event); a ``MyDatabase`` with ``.url``, ``.password``, ``.checksums()``;
  dropped afterwards.
- ``mariadb_db_name`` (function): a fresh, not-yet-existing name, dropped afterwards.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dbcrate.sandbox.mariadb import TempMariaDB, ident

MARIADB_PASSWORD = "test-Root-pw-4b7e"
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
CLIENT = shutil.which("mariadb") or "/usr/bin/mariadb"

ALL_BYTES = bytes(range(256))
SAMPLE_SQL = f"""
CREATE TABLE customers (
  id INT AUTO_INCREMENT PRIMARY KEY,
  name VARCHAR(200) CHARACTER SET utf8mb4 COLLATE utf8mb4_bin NOT NULL,
  note TEXT CHARACTER SET utf8mb4,
  updated INT NOT NULL DEFAULT 0
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
CREATE TABLE blobs (id INT PRIMARY KEY, data LONGBLOB, small VARBINARY(300)) ENGINE=InnoDB;
CREATE TABLE audit (id INT AUTO_INCREMENT PRIMARY KEY, customer INT, what VARCHAR(50));
INSERT INTO customers (name, note) VALUES
  ('Zoë 🐘', 'emoji 😀🎉 and CJK 漢字, tab\\tquote '' backslash \\\\'),
  ('plain', NULL), ('Ünïcödé', REPEAT('ß', 300));
INSERT INTO blobs VALUES (1, 0x{ALL_BYTES.hex()}, 0x{ALL_BYTES[::-1].hex()}),
  (2, '', NULL), (3, NULL, 0x00);
CREATE VIEW customer_names AS SELECT id, UPPER(name) AS shout FROM customers;
CREATE TRIGGER customers_audit AFTER INSERT ON customers FOR EACH ROW
  INSERT INTO audit (customer, what) VALUES (NEW.id, 'insert');
CREATE PROCEDURE bump(IN who INT) BEGIN UPDATE customers SET updated = updated + 1
  WHERE id = who; END;
CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2;
CREATE EVENT nightly ON SCHEDULE EVERY 1 DAY STARTS '2037-01-01 00:00:00' DISABLE
  DO UPDATE customers SET updated = 0;
INSERT INTO customers (name) VALUES ('via trigger');
"""



def checksums(server: TempMariaDB, database: str) -> dict[str, str]:
    """Per-table ``CHECKSUM TABLE ... EXTENDED`` and row counts, plus the normalised
    ``SHOW CREATE`` text of every table, view, trigger, routine and event."""
    q = f"CONVERT(0x{database.encode().hex()} USING utf8mb4)"
    out: dict[str, str] = {}
    objects = server.sql(
        f"SELECT TABLE_TYPE, TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA={q};"
        f"SELECT 'TRIGGER', TRIGGER_NAME FROM information_schema.TRIGGERS"
        f" WHERE TRIGGER_SCHEMA={q};"
        f"SELECT ROUTINE_TYPE, ROUTINE_NAME FROM information_schema.ROUTINES"
        f" WHERE ROUTINE_SCHEMA={q};"
        f"SELECT 'EVENT', EVENT_NAME FROM information_schema.EVENTS WHERE EVENT_SCHEMA={q};"
    )
    for kind, name in sorted((r[0], r[1]) for r in objects):
        show = {"BASE TABLE": "TABLE", "VIEW": "VIEW"}.get(kind, kind)
        rows = server.sql(f"SHOW CREATE {show} {ident(name)}", database)
        column = {"TABLE": 1, "VIEW": 1, "TRIGGER": 2, "PROCEDURE": 2, "FUNCTION": 2,
                  "EVENT": 3}[show]
        text = rows[0][column].replace(ident(database), "`DB`")
        out[f"{show} {name}"] = text
        if show == "TABLE":
            summary = server.sql(f"CHECKSUM TABLE {ident(name)} EXTENDED;"
                                 f"SELECT COUNT(*) FROM {ident(name)}", database)
            out[f"DATA {name}"] = f"{summary[0][1]} rows={summary[1][0]}"
    return out


def new_db_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@dataclass
class MyDatabase:
    """One database on the session's MariaDB server."""

    server: TempMariaDB
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    @property
    def password(self) -> str:
        return self.server.password

    def checksums(self) -> dict[str, str]:
        return checksums(self.server, self.name)

    def sql(self, statements: str) -> list[list[str]]:
        return self.server.sql(statements, self.name)


@pytest.fixture(scope="session")
def mariadb_server() -> Iterator[TempMariaDB]:
    if not Path(MARIADBD).exists():
        pytest.skip("mariadbd is not installed (apt-get install mariadb-server)")
    server = TempMariaDB(password=MARIADB_PASSWORD)
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def mariadb_db(mariadb_server: TempMariaDB) -> Iterator[MyDatabase]:
    db = MyDatabase(mariadb_server, new_db_name("sample"))
    mariadb_server.create_database(db.name)
    try:
        db.sql("DELIMITER //\n" + SAMPLE_SQL.replace(";\n", "//\n") + "\nDELIMITER ;\n")
        yield db
    finally:
        mariadb_server.drop_database(db.name)


@pytest.fixture
def mariadb_db_name(mariadb_server: TempMariaDB) -> Iterator[str]:
    name = new_db_name("target")
    try:
        yield name
    finally:
        mariadb_server.drop_database(name)
