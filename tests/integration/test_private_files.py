"""One private place for secret files (the MySQL defaults file, MongoDB's ``--config``):
memory-backed (/dev/shm here), a 0700 directory named ``dbcrate-secret-<pid>-*``, a 0600
file, present only while the tool runs, gone after success, failure and SIGTERM."""

from __future__ import annotations

import os
import signal
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbcrate import private_files
from dbcrate.engines import Connection
from dbcrate.engines.mysql.engine import MySQLEngine
from dbcrate.errors import DumpFailed
from tests.lib.e2e import Setup, local_target, make_setup
from tests.lib.procs import children, cmdline
from tests.lib.running import Running, assert_interrupted
from tests.servers.backed import Backed
from tests.servers.mariadb import MyDatabase
from tests.servers.mongodb import PASSWORD, URL, Tools

BASE = Path("/dev/shm")
pytestmark = pytest.mark.skipif(not BASE.is_dir(), reason="no /dev/shm here")


def _secret_path(pid: int, flag: str) -> Path:
    """The secret file the tool ``pid`` was given with ``flag`` (``--defaults-file=`` or
    ``--config``), checked to be private while the tool runs."""
    argv = cmdline(pid)
    if flag.endswith("="):
        [value] = [a[len(flag):] for a in argv if a.startswith(flag)]
    else:
        value = argv[argv.index(flag) + 1]
    path = Path(value)
    assert path.parent.parent == BASE
    assert path.parent.name.startswith(f"{private_files.SECRET_PREFIX}")
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_uid == os.getuid()
    return path


def _gone(path: Path) -> bool:
    return not path.exists() and not path.parent.exists()


# -- MySQL / MariaDB (real server and tools) ------------------------------------------------


def _mysql_dump(db: MyDatabase) -> tuple[Path, int, Iterator[bytes]]:
    """Start a dump; the defaults file (checked private), the tool's pid, the rest."""
    it = MySQLEngine(Connection(db.url, db.password, {})).dump()
    next(it)
    [pid] = children("mariadb-dump")
    return _secret_path(pid, "--defaults-file="), pid, it


def test_mysql_defaults_file_after_success(my_backed: tuple[MyDatabase, object]) -> None:
    path, _pid, rest = _mysql_dump(my_backed[0])  # big enough to be seen running
    for _ in rest:
        assert path.exists()  # while the tool runs
    assert _gone(path)


def test_mysql_defaults_file_after_failure(my_backed: tuple[MyDatabase, object]) -> None:
    path, pid, rest = _mysql_dump(my_backed[0])
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(DumpFailed, match="killed by SIGKILL"):
        for _ in rest:
            pass
    assert _gone(path)


def test_mysql_defaults_file_after_sigterm(my_backed: tuple[MyDatabase, object]) -> None:
    backed = my_backed[1]
    assert isinstance(backed, Backed)
    run = Running(backed.setup, "backup", "orders")
    pid = run.wait_for(lambda: run.tool("mariadb-dump", arg="--defaults-file="),
                       "mariadb-dump running")
    path = _secret_path(pid, "--defaults-file=")
    code, err = run.signal(signal.SIGTERM)
    line = assert_interrupted(code, err, signal.SIGTERM, "backup of orders")
    assert "client defaults file" in line
    assert _gone(path)


# -- MongoDB (stand-in tools: no MongoDB for this platform) ----------------------------------


@pytest.fixture
def mongo(tmp_path: Path, tools: Tools) -> tuple[Setup, Tools]:
    options = {k: v for k, v in tools.options().items() if k != "temp_dir"}  # the default
    setup = make_setup(tmp_path / "cfg", url=URL, password=PASSWORD, engine="mongodb",
                       targets=[local_target(tmp_path / "backups")], job_extra=options)
    return setup, tools


def _config_of(fake: Tools) -> Path:
    [run] = fake.runs()
    argv = [str(a) for a in run["argv"]]
    assert run["config_mode"] == 0o600
    return Path(argv[argv.index("--config") + 1])


def test_mongo_config_file_after_success(mongo: tuple[Setup, Tools]) -> None:
    setup, fake = mongo
    setup.run("backup", "orders", env=fake.env(), check=True)
    path = _config_of(fake)
    assert path.parent.parent == BASE
    assert _gone(path)


def test_mongo_config_file_after_failure(mongo: tuple[Setup, Tools]) -> None:
    setup, fake = mongo
    proc = setup.run("backup", "orders",
                     env=fake.env(STANDIN_FAIL_AFTER=str(1 << 20)))
    assert proc.returncode == 3, proc.stderr
    assert _gone(_config_of(fake))


def test_mongo_config_file_after_sigterm(mongo: tuple[Setup, Tools]) -> None:
    setup, fake = mongo
    run = Running(setup, "backup", "orders",
                  env=fake.env(STANDIN_HANG_AFTER=str(1 << 20)))
    # the stand-in is a script: find it by its argv (its command name is python3's)
    pid = run.wait_for(lambda: next((p for p in run.tools() if "--config" in cmdline(p)
                                     and cmdline(p)[1].endswith("/mongodump")), None),
                       "mongodump running")
    path = _secret_path(pid, "--config")
    code, err = run.signal(signal.SIGTERM)
    assert_interrupted(code, err, signal.SIGTERM, "backup of orders")
    assert _gone(path)
    assert run.leftover_tools() == []


# -- the helper itself --------------------------------------------------------------------------


def test_private_base_is_memory_backed_unless_told(tmp_path: Path) -> None:
    assert private_files.private_base() == "/dev/shm"
    assert private_files.private_base(str(tmp_path)) == str(tmp_path)


def test_dirs_of_dead_processes_are_swept(tmp_path: Path) -> None:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    dead = tmp_path / f"{private_files.SECRET_PREFIX}{pid}-x"
    live = tmp_path / f"{private_files.SECRET_PREFIX}{os.getpid()}-y"
    for d in (dead, live):
        d.mkdir()
        (d / "client.cnf").write_text("secret")
    with private_files.secret_file("f", "s", under=str(tmp_path)) as path:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert not dead.exists() and live.exists()
    assert _gone(path)
