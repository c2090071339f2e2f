"""Databases big enough that tools run a while, each with one complete backup on a local
target (module scope: built once per test module that asks).

- ``pg_big`` (module): the PostgreSQL sample plus ~25 MiB of poorly compressible rows.
- ``pg_backed`` (module): a ``Backed`` (setup, backups dir, files) of ``pg_big``.
- ``my_backed`` (module): ``(MyDatabase, Backed)``: the MariaDB sample plus ~30 MiB.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbcrate.sandbox import TempPostgres, load_sample
from tests.lib.e2e import Setup, local_target, make_setup
from tests.lib.procs import files_under
from tests.servers.mariadb import SAMPLE_SQL, MyDatabase, TempMariaDB
from tests.servers.mariadb import new_db_name as new_my_name
from tests.servers.postgres import PgDatabase, new_db_name


@dataclasses.dataclass
class Backed:
    """A database with one complete backup on a local target."""

    setup: Setup
    backups: Path
    files: list[str]


@pytest.fixture(scope="module")
def pg_big(pg_server: TempPostgres) -> Iterator[PgDatabase]:
    """The sample plus ~25 MiB of poorly compressible rows (tools run a while)."""
    db = PgDatabase(pg_server, new_db_name("sig"))
    pg_server.create_database(db.name)
    try:
        load_sample(db.url, password=db.password)
        with pg_server.connect(db.name) as conn:
            conn.execute("CREATE TABLE filler AS SELECT i, md5(i::text) || "
                         "repeat(md5((i * 7)::text), 6) AS t FROM generate_series(1, 110000) i")
        yield db
    finally:
        pg_server.drop_database(db.name)


@pytest.fixture(scope="module")
def pg_backed(pg_big: PgDatabase, tmp_path_factory: pytest.TempPathFactory) -> Backed:
    tmp = tmp_path_factory.mktemp("pgsig")
    setup = make_setup(tmp / "cfg", url=pg_big.url, password=pg_big.password,
                       targets=[local_target(tmp / "backups")])
    setup.run("backup", "orders", check=True)
    return Backed(setup, tmp / "backups", files_under(tmp / "backups"))


@pytest.fixture(scope="module")
def my_backed(mariadb_server: TempMariaDB,
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[MyDatabase, Backed]]:
    db = MyDatabase(mariadb_server, new_my_name("sig"))
    mariadb_server.create_database(db.name)
    try:
        db.sql("DELIMITER //\n" + SAMPLE_SQL.replace(";\n", "//\n") + "\nDELIMITER ;\n")
        db.sql("CREATE TABLE filler (i INT PRIMARY KEY, t TEXT) ENGINE=InnoDB;"
               "INSERT INTO filler SELECT seq, CONCAT(MD5(seq), REPEAT(MD5(seq * 7), 6))"
               " FROM seq_1_to_130000")
        tmp = tmp_path_factory.mktemp("mysig")
        setup = make_setup(tmp / "cfg", url=db.url, password=db.password, engine="mysql",
                           targets=[local_target(tmp / "backups")])
        setup.run("backup", "orders", check=True)
        yield db, Backed(setup, tmp / "backups", files_under(tmp / "backups"))
    finally:
        mariadb_server.drop_database(db.name)
