"""MariaDB fixtures: a real ``mariadbd`` from Debian's packages, started per session on a
free loopback port with a temporary datadir (as the ``mysql`` system user when run as
root), never the system instance.

- ``mariadb_server`` (session): a started ``TempMariaDB`` (root password
  ``MARIADB_PASSWORD``), stopped and removed at the end.
- ``mariadb_db`` (function): a fresh database loaded with ``SAMPLE_SQL`` (utf8mb4 text
  with emoji, a blob of all 256 byte values, a view, a trigger, a procedure, a function
  and an event); a ``MyDatabase`` with ``.url``, ``.password``, ``.checksums()``;
  dropped afterwards.
- ``mariadb_db_name`` (function): a fresh, not-yet-existing name, dropped afterwards.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import pytest

from dbcrate.sandbox import free_port

MARIADB_PASSWORD = "test-Root-pw-4b7e"
MARIADBD = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
INSTALL_DB = shutil.which("mariadb-install-db") or "/usr/bin/mariadb-install-db"
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



def _user_prefix() -> tuple[list[str], pwd.struct_passwd | None]:
    """argv prefix that drops root to the ``mysql`` user (or none when not root)."""
    if os.geteuid() != 0:
        return [], None
    try:
        user = pwd.getpwnam("mysql")
    except KeyError:
        subprocess.run(["useradd", "--system", "--user-group", "--no-create-home",
                        "--home-dir", "/nonexistent", "--shell", "/usr/sbin/nologin",
                        "dbcrate-sandbox"], check=False, capture_output=True)
        user = pwd.getpwnam("dbcrate-sandbox")
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                "--init-groups", "--"], user
    return [shutil.which("runuser") or "runuser", "-u", user.pw_name, "--"], user


class TempMariaDB:
    """A throwaway MariaDB server on 127.0.0.1:port."""

    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dbcrate-mariadb-"))
        self.port = free_port()
        self.password = MARIADB_PASSWORD
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = ""

    @property
    def socket(self) -> str:
        return str(self.root / "mysqld.sock")

    def url(self, database: str, user: str = "root") -> str:
        return f"mysql://{quote(user, safe='')}@127.0.0.1:{self.port}/{quote(database, safe='')}"

    def start(self) -> TempMariaDB:
        prefix, user = _user_prefix()
        data = self.root / "data"
        data.mkdir()
        self.root.chmod(0o755)
        if user is not None:
            os.chown(self.root, user.pw_uid, user.pw_gid)
            os.chown(data, user.pw_uid, user.pw_gid)
        subprocess.run(
            [*prefix, INSTALL_DB, "--no-defaults", f"--datadir={data}",
             "--auth-root-authentication-method=normal", "--skip-test-db",
             "--skip-name-resolve"],
            check=True, capture_output=True, timeout=120,
        )
        log = open(self.root / "server.log", "wb")  # noqa: SIM115 - the server's lifetime
        self.proc = subprocess.Popen(
            [*prefix, MARIADBD, "--no-defaults", f"--datadir={data}", f"--port={self.port}",
             "--bind-address=127.0.0.1", f"--socket={self.socket}",
             f"--pid-file={self.root / 'mysqld.pid'}", "--skip-name-resolve",
             "--skip-log-bin", "--event-scheduler=OFF", "--innodb-buffer-pool-size=64M",
             "--innodb-flush-log-at-trx-commit=2", "--character-set-server=utf8mb4",
             "--max-allowed-packet=64M", "--skip-symbolic-links"],
            stdout=log, stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + 60
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError("mariadbd exited:\n"
                                   + (self.root / "server.log").read_text()[-3000:])
            ping = subprocess.run([CLIENT, "--no-defaults", f"--socket={self.socket}",
                                   "-uroot", "-e", "SELECT 1"], capture_output=True, check=False)
            if ping.returncode == 0:
                break
            if time.monotonic() > deadline:
                raise RuntimeError("mariadbd did not start within 60s")
            time.sleep(0.2)
        setup = (
            f"CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY '{self.password}';"
            "GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;"
            f"ALTER USER 'root'@'localhost' IDENTIFIED BY '{self.password}';"
        )
        done = subprocess.run([CLIENT, "--no-defaults", f"--socket={self.socket}", "-uroot"],
                              input=setup.encode(), capture_output=True, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"setting up users failed: {done.stderr.decode()}")
        self.version = self.sql("SELECT VERSION()")[0][0]
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.root, ignore_errors=True)

    def _defaults(self) -> Path:
        path = self.root / "client.cnf"
        if not path.exists():
            path.write_text(f"[client]\nhost=127.0.0.1\nport={self.port}\nuser=root\n"
                            f"password={self.password}\ndefault-character-set=utf8mb4\n")
            path.chmod(0o600)
        return path

    def sql(self, statements: str, database: str | None = None) -> list[list[str]]:
        """Run ``statements`` as root over TCP; rows of raw tab-separated text."""
        argv = [CLIENT, f"--defaults-file={self._defaults()}", "--batch",
                "--skip-column-names"]
        if database is not None:
            argv.append(f"--database={database}")
        proc = subprocess.run(argv, input=statements.encode(), capture_output=True,
                              check=False, timeout=300)
        if proc.returncode != 0:
            raise RuntimeError(f"mariadb failed: {proc.stderr.decode(errors='replace')}")
        return [line.split("\t") for line in proc.stdout.decode().splitlines()]

    def database_exists(self, name: str) -> bool:
        rows = self.sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = "
                        f"CONVERT(0x{name.encode().hex()} USING utf8mb4)")
        return rows[0][0] == "1"

    def create_database(self, name: str) -> None:
        self.sql(f"CREATE DATABASE {ident(name)}")

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {ident(name)}")


def ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


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
    server = TempMariaDB()
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
