"""Every PostgreSQL major 14-18: back up with the server's own major although another
major's pg_dump is first on PATH, restore into the same and the next major, refuse an
older major unless --force. Real servers (one per major per session), the real CLI."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbcrate import pgbin
from dbcrate.sandbox import TempPostgres
from tests.lib.e2e import Setup, local_target, make_setup
from tests.servers.postgres import PgDatabase, PgServerFactory, new_db_name, sample_db

MAJORS = (14, 15, 16, 17, 18)


def _other_major_path(major: int) -> str:
    """PATH with another major's bin dir first (a pg_dump that must not be used)."""
    other = major + 1 if major < 18 else 17
    return f"{pgbin.ensure(other) / 'bin'}{os.pathsep}{os.environ.get('PATH', '')}"


@pytest.fixture
def source(request: pytest.FixtureRequest, pg_server_factory: PgServerFactory,
           ) -> Iterator[PgDatabase]:
    with sample_db(pg_server_factory(request.param), f"m{request.param}", scale=20) as db:
        yield db


def _backup(tmp_path: Path, db: PgDatabase, major: int) -> tuple[Setup, dict[str, str]]:
    setup = make_setup(tmp_path, url=db.url, password=db.password,
                       targets=[local_target(tmp_path / "backups")])
    setup.run("backup", "orders", env={"PATH": _other_major_path(major)}, check=True)
    [b] = setup.list_json("orders")
    assert b["server_version"] == db.server.version
    assert b["tool"] == "pg_dump"
    assert b["tool_version"].split(".")[0] == str(major), b["tool_version"]
    return setup, db.checksums()


def _restore(setup: Setup, server: TempPostgres, name: str, *extra: str,
             ) -> tuple[int, str]:
    proc = setup.run("restore", "orders", "--latest", "--to", server.url(name),
                     "--identity", str(setup.identity), *extra,
                     env={"DBCRATE_RESTORE_PASSWORD": server.password})
    return proc.returncode, proc.stdout + proc.stderr


@pytest.mark.parametrize("source", MAJORS, indirect=True, ids=[f"pg{m}" for m in MAJORS])
def test_backup_with_same_major_and_restore_into_same_and_next_major(
    tmp_path: Path, source: PgDatabase, pg_server_factory: PgServerFactory
) -> None:
    major = int(source.server.version.split(".")[0])
    setup, expected = _backup(tmp_path, source, major)
    for target_major in (major, major + 1) if major < 18 else (major,):
        server = pg_server_factory(target_major)
        name = new_db_name("into")
        try:
            code, out = _restore(setup, server, name)
            assert code == 0, out
            assert PgDatabase(server, name).checksums() == expected, target_major
        finally:
            server.drop_database(name)


@pytest.mark.parametrize("source", [15], indirect=True, ids=["pg15"])
def test_restore_into_an_older_major_is_refused_unless_forced(
    tmp_path: Path, source: PgDatabase, pg_server_factory: PgServerFactory
) -> None:
    setup, expected = _backup(tmp_path, source, 15)
    older = pg_server_factory(14)
    name = new_db_name("older")
    try:
        code, out = _restore(setup, older, name)
        assert code == 7, out
        assert "older" in out and "--force" in out and "15" in out and "14" in out
        assert not older.database_exists(name)  # target unchanged

        code, out = _restore(setup, older, name, "--force")
        assert code == 0, out
        assert PgDatabase(older, name).checksums() == expected
    finally:
        older.drop_database(name)
