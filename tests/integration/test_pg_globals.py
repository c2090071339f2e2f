"""Cluster-wide objects: a role with a password and a grant survives a globals round trip
through the real CLI (``globals = true``, ``restore --globals``)."""

from __future__ import annotations

import secrets
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from dbcrate.engines import RestoreOptions, open_engine
from dbcrate.engines.postgres.cluster import unexpected_errors
from dbcrate.errors import RestoreFailed
from tests.lib.e2e import local_target, make_setup
from tests.servers.postgres import PgDatabase, new_db_name


def _drop_role(db: PgDatabase, role: str, *dbs: str) -> None:
    for name in dbs:
        if db.server.database_exists(name):
            db.server.psql(sql.SQL("DROP OWNED BY {}").format(sql.Identifier(role)), name)
    db.server.psql(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))


def test_role_with_password_and_grant_comes_back(tmp_path: Path, pg_db: PgDatabase) -> None:
    role = f"reporter_{secrets.token_hex(4)}"
    role_pw = "pw-" + secrets.token_urlsafe(12)
    srv = pg_db.server
    srv.psql(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
        sql.Identifier(role), sql.Literal(role_pw)))
    srv.psql(sql.SQL("GRANT SELECT ON texts TO {}").format(sql.Identifier(role)), pg_db.name)
    restored = new_db_name("globals")
    try:
        setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                           targets=[local_target(tmp_path / "backups")],
                           job_extra={"globals": True})
        setup.run("backup", "orders", check=True)
        [b] = setup.list_json("orders")
        _drop_role(pg_db, role, pg_db.name)
        assert not srv.psql("SELECT 1 FROM pg_roles WHERE rolname = %s", params=(role,))

        setup.run("restore", "orders", "--latest", "--globals", "--to", srv.url(restored),
                  "--identity", str(setup.identity), check=True)
        assert srv.psql("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s",
                        params=(role,)) == [(True,)]
        with psycopg.connect(host=srv.host, port=srv.port, user=role, password=role_pw,
                             dbname=restored, connect_timeout=10) as conn:
            row = conn.execute("SELECT has_table_privilege(current_user, 'texts', 'SELECT'),"
                               " count(*) FROM texts").fetchone()
        assert row is not None and row[0] is True and row[1] > 0
        assert PgDatabase(srv, restored).checksums() == pg_db.checksums()

        # applying the same globals again: every role already exists, nothing aborts
        again = new_db_name("again")
        try:
            setup.run("restore", "orders", "--id", b["id"], "--globals", "--to",
                      srv.url(again), "--identity", str(setup.identity), check=True)
        finally:
            srv.drop_database(again)
    finally:
        srv.drop_database(restored)
        _drop_role(pg_db, role, pg_db.name)


def test_globals_that_fail_for_another_reason_are_restore_failed(pg_db: PgDatabase) -> None:
    e = open_engine("postgres", pg_db.connection())
    script = b"CREATE ROLE postgres;\nCREATE TABLESPACE nowhere LOCATION '/nonexistent/dir';\n"
    with pytest.raises(RestoreFailed, match=r"nowhere|directory") as info:
        e.restore_part("globals", [script], RestoreOptions(with_globals=True))
    assert pg_db.password not in str(info.value)


def test_only_already_exists_errors_are_expected() -> None:
    text = ('psql:<stdin>:6: ERROR:  role "postgres" already exists\n'
            'psql:<stdin>:9: ERROR:  permission denied to create role\n')
    assert unexpected_errors(text) == ["permission denied to create role"]


def test_schema_and_table_options_limit_the_dump(tmp_path: Path, pg_db: PgDatabase) -> None:
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")],
                       job_extra={"exclude_schemas": ["audit"],
                                  "exclude_tables": ["blobs", "texts"]})
    setup.run("backup", "orders", check=True)
    name = new_db_name("subset")
    try:
        setup.run("restore", "orders", "--latest", "--to", pg_db.server.url(name),
                  "--identity", str(setup.identity), "--no-owner", "--no-privileges",
                  check=True)
        got = PgDatabase(pg_db.server, name).checksums()
        want = pg_db.checksums()
        assert "public.customers" in got and got["public.customers"] == want["public.customers"]
        assert "public.blobs" not in got and "public.texts" not in got
        assert "audit.events" not in got
    finally:
        pg_db.server.drop_database(name)
