"""Backups run with the least-privilege role ``dbcrate grants JOB`` prints, created by
running exactly that script on the real server; the restore (as an administrator) gives
back the same data. A superuser backup warns; the least-privilege one does not."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dbcrate.engines.redis.resp import RespError
from dbcrate.sandbox import load_sample as load_pg_sample
from tests.lib.e2e import Setup, local_target, make_setup
from tests.servers.mariadb import CLIENT, MyDatabase, TempMariaDB
from tests.servers.mariadb import new_db_name as new_my_db
from tests.servers.postgres import PgDatabase, new_db_name
from tests.servers.redis import RedisServer, checksums, load_sample

WARNING = "backs up as a superuser"


def _grants(setup: Setup, password: str) -> str:
    script = setup.run("grants", "orders", check=True).stdout
    assert password not in script
    return script


def _restore(setup: Setup, to: str, password: str) -> None:
    setup.run("restore", "orders", "--latest", "--to", to, "--identity", str(setup.identity),
              env={"DBCRATE_RESTORE_PASSWORD": password}, check=True)


# -- PostgreSQL ----------------------------------------------------------------------------


CASES = [(17, False), (17, True), (14, False), (18, False)]


@pytest.fixture
def pg_source(request: pytest.FixtureRequest, pg_server_factory: Any) -> Iterator[PgDatabase]:
    """The sample database (with large objects) on a server of major ``request.param``."""
    server = pg_server_factory(request.param)
    db = PgDatabase(server, new_db_name("lpsrc"))
    server.create_database(db.name)
    try:
        load_pg_sample(db.url, password=db.password)
        yield db
    finally:
        server.drop_database(db.name)


@pytest.mark.parametrize(("pg_source", "globals_"), CASES, indirect=["pg_source"],
                         ids=[f"pg{m}{'-globals' if g else ''}" for m, g in CASES])
def test_postgres_backup_as_printed_role(
    tmp_path: Path, pg_source: PgDatabase, globals_: bool
) -> None:
    pg_db = pg_source
    server = pg_db.server
    role, password = f"lp_{uuid.uuid4().hex[:8]}", "lp-" + uuid.uuid4().hex
    url = pg_db.url.replace(f"{server.user}@", f"{role}@", 1)
    setup = make_setup(tmp_path / "cfg", url=url, password=password,
                       targets=[local_target(tmp_path / "backups")],
                       job_extra={"globals": True} if globals_ else None)
    script = _grants(setup, password)
    assert f'CREATE ROLE "{role}" LOGIN;' in script and "pg_read_all_data" in script
    with server.connect(pg_db.name) as conn:  # where the script says to run it
        conn.execute(script)  # exactly as printed (comments included)
        conn.execute(f"ALTER ROLE \"{role}\" PASSWORD '{password}'")
    restored = new_db_name("lp")
    try:
        out = setup.run("backup", "orders", check=True)
        assert WARNING not in out.stderr
        if globals_:
            # pg_read_all_data reads pg_authid too: the roles come with their password
            # hashes (docs/engines/postgres.md says so)
            assert "cannot read pg_authid" not in out.stderr
            assert len(list((tmp_path / "backups").rglob("*-globals.sql.*"))) == 1
            with server.connect("postgres") as conn:
                conn.execute(f'SET ROLE "{role}"')
                assert conn.execute("SELECT count(rolpassword) FROM pg_authid").fetchone()
        _restore(setup, server.url(restored), server.password)
        assert PgDatabase(server, restored).checksums() == pg_db.checksums()
        # the same job as the superuser: one warning naming the reason
        admin = make_setup(tmp_path / "admin", url=pg_db.url, password=server.password,
                           targets=[local_target(tmp_path / "backups")])
        warned = admin.run("backup", "orders", check=True).stderr
        assert warned.count(WARNING) == 1 and "rolsuper" in warned
    finally:
        server.drop_database(restored)
        with server.connect(pg_db.name) as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
        with server.connect("postgres") as conn:
            conn.execute(f'DROP OWNED BY "{role}"')
            conn.execute(f'DROP ROLE "{role}"')


# -- MariaDB -------------------------------------------------------------------------------


def _mariadb_run(server: TempMariaDB, script: str) -> None:
    proc = subprocess.run([CLIENT, "--no-defaults", f"--socket={server.socket}", "-uroot",
                           f"-p{server.password}"], input=script, text=True,
                          capture_output=True, check=False)
    assert proc.returncode == 0, proc.stderr


def test_mariadb_backup_as_printed_account(tmp_path: Path, mariadb_db: MyDatabase) -> None:
    server = mariadb_db.server
    user, password = f"lp_{uuid.uuid4().hex[:8]}", "lp-" + uuid.uuid4().hex
    setup = make_setup(tmp_path / "cfg", url=server.url(mariadb_db.name, user=user),
                       password=password, engine="mysql",
                       targets=[local_target(tmp_path / "backups")])
    script = _grants(setup, password)
    account = f"'{user}'@'127.0.0.1'"
    assert f"CREATE USER {account};" in script
    _mariadb_run(server, script + f"ALTER USER {account} IDENTIFIED BY '{password}';\n")
    restored = new_my_db("lp")
    try:
        out = setup.run("backup", "orders", check=True)
        assert WARNING not in out.stderr
        _restore(setup, server.url(restored), server.password)
        assert MyDatabase(server, restored).checksums() == mariadb_db.checksums()
        admin = make_setup(tmp_path / "admin", url=mariadb_db.url, password=server.password,
                           engine="mysql", targets=[local_target(tmp_path / "backups")])
        warned = admin.run("backup", "orders", check=True).stderr
        assert warned.count(WARNING) == 1 and "SUPER" in warned
    finally:
        server.drop_database(restored)
        _mariadb_run(server, f"DROP USER {account};")


# -- Redis ---------------------------------------------------------------------------------


def test_redis_backup_as_printed_acl_user(
    tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    source, target = redis_factory(), redis_factory()
    load_sample(source)
    expected = checksums(source)
    user, password = f"lp_{uuid.uuid4().hex[:8]}", "lp-" + uuid.uuid4().hex
    url = source.url.replace("redis://", f"redis://{user}@", 1)
    setup = make_setup(tmp_path / "cfg", url=url, password=password, engine="redis",
                       targets=[local_target(tmp_path / "backups")])
    script = _grants(setup, password)
    commands = [line.split() for line in script.splitlines()
                if line.strip() and not line.startswith("#")]
    assert commands and all(c[:3] == ["ACL", "SETUSER", user] for c in commands)
    with source.client() as admin:
        for c in commands:
            admin.call(*c)
        admin.call("ACL", "SETUSER", user, f">{password}")
        admin.call("AUTH", user, password)  # from here on, this connection is the new user
        with pytest.raises(RespError, match="NOPERM"):  # the role really is restricted
            admin.call("FLUSHALL")
    out = setup.run("backup", "orders", check=True)
    assert WARNING not in out.stderr
    _restore(setup, target.url, target.password)
    assert checksums(target) == expected
    admin_setup = make_setup(tmp_path / "admin", url=source.url, password=source.password,
                             engine="redis", targets=[local_target(tmp_path / "backups")])
    warned = admin_setup.run("backup", "orders", check=True).stderr
    assert warned.count(WARNING) == 1 and "+@all" in warned


def test_grants_for_mongodb_and_superuser_urls(tmp_path: Path) -> None:
    """No MongoDB server here: the printed command uses the built-in backup role and the
    url's user; a superuser url gets dbcrate_backup; nothing connects, no secret shows."""
    pw = "pw-" + uuid.uuid4().hex
    mongo = make_setup(tmp_path / "m", url=f"mongodb://app:{pw}@h1,h2/shop?authSource=admin",
                       password=pw, engine="mongodb", targets=[local_target(tmp_path / "b")])
    script = _grants(mongo, pw)
    assert 'createUser({user: "app", pwd: passwordPrompt(), roles: [{role: "backup"' in script
    as_json = mongo.run("grants", "orders", "--json", check=True).stdout
    assert '"engine": "mongodb"' in as_json and pw not in as_json
    root = make_setup(tmp_path / "r", url=f"mysql://root:{pw}@db.example/shop", password=pw,
                      engine="mysql", targets=[local_target(tmp_path / "b")])
    script = _grants(root, pw)
    assert "CREATE USER 'dbcrate_backup'@'%';" in script and "connects as 'root'" in script
    missing = root.run("grants", "nope")
    assert missing.returncode == 2 and "no job named 'nope'" in missing.stderr
