"""Stop signals sent to the real CLI at several points: while dumping, while uploading to
S3, while ``pg_restore -j`` runs, while the MariaDB client loads, during a redis copy
restore. After each: the documented exit code (143 SIGTERM, 130 SIGINT/SIGHUP), no
traceback, one line saying what was interrupted and removed, no file or object beyond the
complete backups already there, no open multipart upload, no staging file, no tool still
running, no database that did not exist before, the source unchanged (checksums). And
Ctrl-C (SIGINT to the process group) as soon as the dump runs, 30 times."""

from __future__ import annotations

import dataclasses
import shutil
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.lib.agent import table_lock
from tests.lib.e2e import Setup, local_target, make_setup
from tests.lib.procs import cmdline, files_under
from tests.lib.running import STOP_SIGNALS, Running, assert_interrupted
from tests.servers.backed import Backed
from tests.servers.mariadb import MyDatabase
from tests.servers.mariadb import new_db_name as new_my_name
from tests.servers.postgres import PgDatabase, new_db_name
from tests.servers.redis import RedisServer, checksums
from tests.servers.redis import load_sample as load_redis
from tests.servers.s3 import S3Server, s3_state

IDS = [signal.Signals(s).name for s in STOP_SIGNALS]


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=IDS)
def test_signal_while_dumping(pg_backed: Backed, pg_big: PgDatabase, sig: int) -> None:
    run = Running(pg_backed.setup, "backup", "orders")
    tmp_files = lambda: [f for f in files_under(pg_backed.backups)  # noqa: E731
                         if ".dbcrate-tmp-" in f]
    run.wait_for(lambda: run.tool("pg_dump", arg="-Fc") and tmp_files(), "pg_dump writing a backup")
    code, err = run.signal(sig)
    line = assert_interrupted(code, err, sig, "backup of orders")
    assert "removed: partial upload to target local" in line
    assert files_under(pg_backed.backups) == pg_backed.files
    assert run.leftover_tools() == []
    assert len(pg_backed.setup.list_json("orders")) == 1


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=IDS)
def test_signal_while_uploading_to_s3(
    tmp_path: Path, pg_big: PgDatabase, s3_server: S3Server, sig: int
) -> None:
    bucket = s3_server.make_bucket()
    s3 = dataclasses.replace(s3_server.target(bucket, part_size=5), name="s3")
    setup = make_setup(tmp_path, url=pg_big.url, password=pg_big.password, targets=[s3],
                       compression="none")
    run = Running(setup, "backup", "orders")
    run.wait_for(lambda: s3_state(s3_server, bucket)[1], "an open multipart upload")
    code, err = run.signal(sig)
    line = assert_interrupted(code, err, sig, "backup of orders")
    assert f"removed: partial upload to s3://{bucket}/" in line
    assert s3_state(s3_server, bucket) == ([], [])
    assert run.leftover_tools() == []


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=IDS)
def test_signal_while_pg_restore_jobs_runs(
    tmp_path: Path, pg_backed: Backed, pg_big: PgDatabase, sig: int
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    name = new_db_name("sigrestore")
    source = pg_big.checksums()
    setup = pg_backed.setup
    try:
        run = Running(setup, "restore", "orders", "--latest", "--jobs", "2",
                      "--to", pg_big.server.url(name), "--identity", str(setup.identity),
                      env={"TMPDIR": str(staging)})
        run.wait_for(lambda: run.tool("pg_restore", arg="--jobs="), "pg_restore running")
        assert pg_big.server.database_exists(name)  # the restore really had begun
        code, err = run.signal(sig)
        assert_interrupted(code, err, sig, "restore of orders")
        assert not pg_big.server.database_exists(name)
        assert list(staging.iterdir()) == []
        assert run.leftover_tools() == []
        assert pg_big.checksums() == source
        assert files_under(pg_backed.backups) == pg_backed.files
    finally:
        pg_big.server.drop_database(name)


def _loader(run: Running) -> int | None:
    """The client that loads the dump (not the ones that query the server's state)."""
    return next((pid for pid, comm in run.tools().items()
                 if comm in ("mariadb", "mysql") and "--binary-mode" in cmdline(pid)), None)


def _secret_dirs(pid: int) -> list[Path]:
    return sorted(Path("/dev/shm").glob(f"dbcrate-secret-{pid}-*"))


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=IDS)
def test_signal_while_mariadb_client_loads(
    my_backed: tuple[MyDatabase, Backed], sig: int
) -> None:
    db, backed = my_backed
    name = new_my_name("sigrestore")
    source = db.checksums()
    setup = backed.setup
    try:
        run = Running(setup, "restore", "orders", "--latest", "--to", db.server.url(name),
                      "--identity", str(setup.identity),
                      env={"DBCRATE_RESTORE_PASSWORD": db.password})
        client = run.wait_for(lambda: _loader(run), "the client loading the dump")
        assert any(a.startswith("--defaults-file=") for a in cmdline(client))
        assert db.server.database_exists(name)
        code, err = run.signal(sig)
        line = assert_interrupted(code, err, sig, "restore of orders")
        assert "client defaults file" in line
        assert f"database {name} created for this restore" in line
        assert not db.server.database_exists(name)
        assert run.leftover_tools() == []
        assert _secret_dirs(run.proc.pid) == []
        assert db.checksums() == source
        assert files_under(backed.backups) == backed.files
    finally:
        db.server.drop_database(name)


@pytest.mark.parametrize("sig", STOP_SIGNALS, ids=IDS)
def test_signal_during_redis_copy_restore(
    tmp_path: Path, redis_factory: Callable[..., RedisServer], sig: int,
    request: pytest.FixtureRequest,
) -> None:
    source, target = redis_factory(), redis_factory()
    load_redis(source, big_mib=48)
    before = checksums(source)
    temp = Path(tempfile.mkdtemp(prefix="rt", dir="/tmp"))  # short: holds a unix socket
    request.addfinalizer(lambda: shutil.rmtree(temp, ignore_errors=True))
    setup = make_setup(tmp_path / "cfg", url=source.url, password=source.password,
                       engine="redis", targets=[local_target(tmp_path / "backups")],
                       job_extra={"temp_dir": str(temp)})
    setup.run("backup", "orders", check=True)
    files = files_under(tmp_path / "backups")
    run = Running(setup, "restore", "orders", "--latest", "--mode", "copy",
                  "--to", target.url, "--identity", str(setup.identity),
                  env={"DBCRATE_RESTORE_PASSWORD": target.password})
    run.wait_for(lambda: run.tool("redis-server"), "the temporary redis-server")
    code, err = run.signal(sig)
    line = assert_interrupted(code, err, sig, "restore of orders")
    assert "temporary redis-server" in line
    assert run.leftover_tools() == []
    assert list(temp.iterdir()) == []  # no snapshot copy, no socket, no log
    assert checksums(source) == before
    assert files_under(tmp_path / "backups") == files


def test_ctrl_c_as_soon_as_the_dump_runs_30_times(tmp_path: Path, pg_db: PgDatabase) -> None:
    """Ctrl-C in a terminal: SIGINT to the whole process group (dbcrate and pg_dump).

    A table lock the test holds keeps each pg_dump waiting, so every try is interrupted
    while the dump runs (on a loaded machine a small dump could otherwise finish first)."""
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")])
    with table_lock(pg_db):
        _ctrl_c_tries(setup, tmp_path)


def _ctrl_c_tries(setup: Setup, tmp_path: Path) -> None:
    for i in range(30):
        run = Running(setup, "backup", "orders", session=True)
        run.wait_for(lambda: run.tool("pg_dump", arg="-Fc"), "pg_dump running")  # noqa: B023
        code, err = run.signal(signal.SIGINT, group=True)
        assert code == 130, f"try {i}: {err}"
        assert "Traceback" not in err and "internal error" not in err, f"try {i}: {err}"
        assert "interrupted by SIGINT during backup of orders" in err, f"try {i}: {err}"
        assert files_under(tmp_path / "backups") == [], f"try {i}"
        assert run.leftover_tools() == [], f"try {i}"
