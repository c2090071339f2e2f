"""PITR fixtures: a PostgreSQL cluster per major whose ``archive_command`` is the real
``dbcrate wal-push`` (one per major per session), with an unprivileged OS user and a
``LOGIN REPLICATION`` role (not a superuser) for dbcrate.

- ``pitr_cluster(major)`` (session factory): a started ``PitrCluster``.

The server runs as ``dbcrate-sandbox`` when the tests run as root, so dbcrate runs as that
user too (a local target has one writing user): ``PitrCluster.dbcrate(...)`` runs the CLI
with this checkout's sources on PYTHONPATH, which must also reach the archive_command.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbcrate import pgbin
from dbcrate.codecs.age import generate_identity
from dbcrate.sandbox import TempPostgres
from dbcrate.sandbox.privileges import SANDBOX_USER, drop_privileges_prefix, ensure_user

ROOT = Path(__file__).resolve().parents[2]
JOB = "pitr"


def _python_for(prefix: list[str]) -> str:
    """An interpreter the server's user can run (a venv whose Python lives in root's home
    is not one): this one, else the system python of the same minor version."""
    minor = f"python{sys.version_info.major}.{sys.version_info.minor}"
    for candidate in (sys.executable, f"/usr/bin/{minor}", shutil.which(minor) or ""):
        if candidate and subprocess.run([*prefix, "env", "-i", candidate, "-c", "pass"],
                                        check=False, capture_output=True).returncode == 0:
            return candidate
    raise RuntimeError("no python the sandbox user can run")


class PitrCluster:
    """An archiving cluster, its dbcrate config (job ``pitr``, local target, age), and the
    identity. Everything lives in ``dir`` (owned by the server's user)."""

    def __init__(self, major: int, *, archive_command: bool = True, **job_extra: Any) -> None:
        self.major = major
        self.owner = ensure_user(SANDBOX_USER) if os.geteuid() == 0 else None
        self.prefix = drop_privileges_prefix(self.owner) if self.owner else []
        self.python = _python_for(self.prefix)
        self.dir = Path(tempfile.mkdtemp(prefix=f"dbcrate-pitr{major}-"))
        self.store = self.dir / "store"
        self.config = self.dir / "dbcrate.toml"
        self.identity = self.dir / "identity.txt"
        self.pythonpath = f"{ROOT / 'src'}:{sysconfig.get_paths()['purelib']}"
        self.password = uuid.uuid4().hex
        command = " ".join([
            "env", shlex.quote(f"PYTHONPATH={self.pythonpath}"),
            shlex.quote(f"DBCRATE_CACHE_DIR={pgbin.cache_root()}"), shlex.quote(self.python),
            "-m", "dbcrate", "wal-push", JOB, "%p", "--config", shlex.quote(str(self.config))])
        settings = {"wal_level": "replica"}
        if archive_command:
            settings.update(archive_mode="on",
                            archive_command="'" + command.replace("'", "''") + "'")
        self.server = TempPostgres(major=major, settings=settings)
        self.job_extra = job_extra

    def start(self) -> PitrCluster:
        """Start the server and write the config; on failure everything is removed."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> PitrCluster:
        self.store.mkdir()
        identity, recipient = generate_identity()
        self.identity.write_text(f"{identity}\n")
        pw = self.dir / "pw"
        pw.write_text(self.password)
        for p in (self.identity, pw):
            p.chmod(0o600)
        self.server.start()
        self.sql(f"CREATE ROLE dbcrate_repl LOGIN REPLICATION PASSWORD '{self.password}'")
        self.sql("GRANT pg_monitor TO dbcrate_repl")
        extra = "".join(f"{k} = {json.dumps(v)}\n" for k, v in self.job_extra.items())
        self.config.write_text(
            f'[agent]\nstate_dir = "{self.dir / "state"}"\n\n'
            f'[backup]\nrecipients = ["{recipient}"]\n\n'
            f'[backup.targets.local]\ntype = "local"\npath = "{self.store}"\n\n'
            f'[[backup.jobs]]\nname = "{JOB}"\nengine = "postgres"\nmode = "physical"\n'
            f'url = "postgresql://dbcrate_repl@127.0.0.1:{self.server.port}/postgres"\n'
            f'password_file = "{pw}"\ntargets = ["local"]\n{extra}')
        self.chown(self.dir)
        return self

    def chown(self, root: Path) -> None:
        """Give ``root`` (recursively) to the server's user."""
        if self.owner is None:
            return
        for d, dirs, files in os.walk(root):
            os.chown(d, self.owner.pw_uid, self.owner.pw_gid)
            for f in files:
                os.chown(Path(d) / f, self.owner.pw_uid, self.owner.pw_gid)
            del dirs  # walked anyway

    def stop(self) -> None:
        self.server.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------

    def env(self) -> dict[str, str]:
        return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir),
                "PYTHONPATH": self.pythonpath, "LC_ALL": "C.UTF-8", "TZ": "UTC",
                "DBCRATE_CACHE_DIR": str(pgbin.cache_root()),
                **{k: v for k, v in os.environ.items() if k == "DBCRATE_ARCHIVE_WAIT"}}

    def dbcrate_popen(self, *args: str) -> subprocess.Popen[str]:
        """Start ``dbcrate --config CONFIG ARGS`` (e.g. the agent) as the server's user."""
        return subprocess.Popen(
            [*self.prefix, "env", "-i", *(f"{k}={v}" for k, v in self.env().items()),
             self.python, "-m", "dbcrate", "--config", str(self.config), *args],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=self.dir)

    def dbcrate(self, *args: str, check: bool = False,
                timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """Run ``dbcrate --config CONFIG ARGS`` as the server's user."""
        proc = subprocess.run(
            [*self.prefix, "env", "-i", *(f"{k}={v}" for k, v in self.env().items()),
             self.python, "-m", "dbcrate", "--config", str(self.config), *args],
            capture_output=True, text=True, timeout=timeout, check=False, cwd=self.dir)
        if check and proc.returncode != 0:
            raise AssertionError(f"dbcrate {' '.join(args)} -> {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def dbcrate_list(self) -> list[dict[str, Any]]:
        value = json.loads(self.dbcrate("list", JOB, "--json", check=True).stdout)
        assert isinstance(value, list)
        return value

    def sql(self, query: str, params: Any = None, db: str = "postgres") -> list[tuple[Any, ...]]:
        """Run ``query`` as the cluster's superuser (the test's admin, not dbcrate)."""
        with self.server.connect(db) as conn, conn.cursor() as cur:
            cur.execute(query.encode(), params)
            return cur.fetchall() if cur.description else []

    def switch_and_wait(self, timeout: float = 60) -> str:
        """Switch to a new segment and wait until the old one is archived; its name."""
        self.sql("SELECT pg_logical_emit_message(false, 'test', 'x')")  # never an empty switch
        name = str(self.sql("SELECT pg_walfile_name(pg_switch_wal())")[0][0])
        deadline = time.monotonic() + timeout
        while True:
            row = self.sql("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver")[0]
            if row[0] is not None and str(row[0])[:24] >= name:
                return name
            if time.monotonic() > deadline:
                raise AssertionError(f"{name} not archived: {row}\n{self.server_log()}")
            time.sleep(0.05)

    def wal_objects(self, name: str) -> list[Path]:
        """The stored objects of WAL file ``name`` on the local target."""
        return sorted((self.store / JOB / "wal" / name[:8]).glob(f"{name}-*"))

    def segment_now(self) -> str:
        """The name of the segment being written."""
        return str(self.sql("SELECT pg_walfile_name(pg_current_wal_insert_lsn())")[0][0])

    def wait(self, probe: Callable[[], object], what: str, limit: float = 60) -> None:
        """Poll ``probe`` until it is true (a guard against a hang, not a timed check)."""
        end = time.monotonic() + limit
        while not probe():
            if time.monotonic() > end:
                raise AssertionError(f"no {what} after {limit}s\n{self.server_log()}")
            time.sleep(0.05)

    def server_log(self) -> str:
        return self.server.log_file.read_text("utf-8", "replace")[-3000:]

    def new_dir(self) -> Path:
        """A fresh data directory path (not created) under a directory of the user's."""
        parent = self.dir / f"r-{uuid.uuid4().hex[:8]}"
        parent.mkdir()
        self.chown(parent)
        return parent / "data"

    def restore(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.dbcrate("restore", JOB, "--pitr", "--identity", str(self.identity), *args)

    @staticmethod
    def restore_json(proc: subprocess.CompletedProcess[str]) -> dict[str, Any]:
        assert proc.returncode == 0, f"{proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        value = json.loads(proc.stdout)
        assert isinstance(value, dict)
        return value

    @contextmanager
    def copy_server(self, data_dir: Path) -> Iterator[psycopg.Connection[Any]]:
        """Run the restored copy on a private socket (its own settings, archive_mode
        included) and yield a superuser connection; stop it (fast) afterwards."""
        sock = data_dir.parent / "sock"
        sock.mkdir(exist_ok=True)
        self.chown(sock)
        pg_ctl = str(self.server.bin_dir / "pg_ctl")
        opts = f"-c listen_addresses='' -c unix_socket_directories='{sock}' -c port=5432"
        log = data_dir.parent / "check.log"
        started = subprocess.run([*self.prefix, pg_ctl, "-D", str(data_dir), "-l", str(log),
                                  "-o", opts, "-w", "-t", "60", "start"], capture_output=True,
                                 text=True, check=False)
        if started.returncode != 0:
            extra = "".join(p.read_text("utf-8", "replace")[-2000:]
                            for p in (log, Path(f"{data_dir}.log")) if p.exists())
            raise AssertionError(f"the copy did not start: {started.stderr}\n{extra}")
        try:
            with psycopg.connect(host=str(sock), port=5432, user="postgres", dbname="postgres",
                                 autocommit=True) as conn:
                yield conn
        finally:
            subprocess.run([*self.prefix, pg_ctl, "-D", str(data_dir), "-m", "fast", "-w",
                            "stop"], check=False, capture_output=True)

    def query_copy(self, data_dir: Path, query: str) -> list[tuple[Any, ...]]:
        """Start the restored copy on a private socket, run ``query``, stop it."""
        with self.copy_server(data_dir) as conn:
            return conn.execute(query.encode()).fetchall()


PitrFactory = Callable[[int], PitrCluster]


@pytest.fixture(scope="session")
def pitr_cluster() -> Iterator[PitrFactory]:
    clusters: dict[int, PitrCluster] = {}

    def get(major: int) -> PitrCluster:
        if major not in clusters:
            clusters[major] = PitrCluster(major).start()
        return clusters[major]

    try:
        yield get
    finally:
        for c in clusters.values():
            c.stop()
