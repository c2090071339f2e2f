"""Backup -> list -> restore through the real CLI, real PostgreSQL and real S3 (moto),
for every compression and encryption mode; restored tables must equal the source."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.lib.e2e import local_target, make_setup
from tests.servers.postgres import PgDatabase, new_db_name
from tests.servers.s3 import S3Server

MODES = [(c, e) for c in ("zstd", "gzip", "none") for e in ("age", "aes-256-gcm", "none")]


@pytest.mark.parametrize(("compression", "encryption"), MODES, ids=[f"{c}-{e}" for c, e in MODES])
def test_round_trip_every_mode_local_and_s3(
    tmp_path: Path, pg_db: PgDatabase, s3_server: S3Server, compression: str, encryption: str
) -> None:
    s3 = dataclasses.replace(s3_server.target(s3_server.make_bucket()), name="s3")
    setup = make_setup(
        tmp_path, url=pg_db.url, password=pg_db.password,
        targets=[local_target(tmp_path / "backups"), s3],
        compression=compression, encryption=encryption,
    )
    source = pg_db.checksums()
    assert len(source) >= 8  # the sample schema really has tables, LOs and sequences

    out = setup.run("backup", "orders", check=True)
    assert "orders: backup" in out.stdout

    for target in ("local", "s3"):
        listed = setup.list_json("orders", "--target", target)
        assert len(listed) == 1
        b = listed[0]
        assert b["target"] == target and b["job"] == "orders" and b["engine"] == "postgres"
        expected_stages = [s for s in (compression, encryption) if s != "none"]
        assert b["stages"] == expected_stages
        assert b["encrypted"] is (encryption != "none")
        for field in ("id", "key", "started_at", "finished_at", "size", "sha256"):
            assert b[field], field

        restored = new_db_name("restored")
        try:
            setup.run("restore", "orders", "--latest", "--target", target,
                      "--to", pg_db.server.url(restored), "--identity", str(setup.identity),
                      check=True)
            assert PgDatabase(pg_db.server, restored).checksums() == source
        finally:
            pg_db.server.drop_database(restored)


def test_restore_selectors_and_cat(tmp_path: Path, pg_db: PgDatabase) -> None:
    """--id, --at and --latest pick the right backup; cat gives the native dump."""
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")])
    setup.run("backup", check=True)
    first = pg_db.checksums()
    with pg_db.server.connect(pg_db.name) as conn:
        conn.execute("INSERT INTO texts (id, body) VALUES (9999, 'after the first backup')")
    setup.run("backup", "orders", check=True)
    second = pg_db.checksums()
    assert first != second
    backups = setup.list_json("orders")
    assert len(backups) == 2
    old, new = backups

    cases = [("--id", old["id"], first), ("--id", new["id"][:13], second),
             ("--at", old["finished_at"], first), ("--latest", None, second)]
    for flag, value, expected in cases:
        name = new_db_name("sel")
        args = ["restore", "orders", flag, *([value] if value else []),
                "--to", pg_db.server.url(name), "--identity", str(setup.identity)]
        try:
            setup.run(*args, check=True)
            assert PgDatabase(pg_db.server, name).checksums() == expected, (flag, value)
        finally:
            pg_db.server.drop_database(name)

    dump = tmp_path / "orders.dump"
    with dump.open("wb") as f:
        import subprocess

        from tests.lib.e2e import DBCRATE
        subprocess.run([DBCRATE, "--config", str(setup.config), "cat", "orders", "--latest",
                        "--identity", str(setup.identity)], stdout=f, check=True)
    assert dump.read_bytes()[:5] == b"PGDMP"
    assert dump.stat().st_size == new["plaintext_size"]


def test_restore_into_existing_empty_database(tmp_path: Path, pg_db: PgDatabase) -> None:
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")], encryption="aes-256-gcm")
    setup.run("backup", check=True)
    name = new_db_name("empty")
    pg_db.server.create_database(name)
    try:
        setup.run("restore", "orders", "--latest", "--to", pg_db.server.url(name), check=True)
        assert PgDatabase(pg_db.server, name).checksums() == pg_db.checksums()
    finally:
        pg_db.server.drop_database(name)
