"""A disposable PostgreSQL server on loopback, for tests, the quick-start demo and (later)
verified restores.

``TempPostgres`` unpacks the server from :mod:`dbcrate.pgbin`, runs ``initdb`` in a private
temporary directory (scram-sha-256 for TCP, trust on a unix socket inside that directory),
starts it on ``127.0.0.1`` with a free port, and removes everything on exit. PostgreSQL
refuses to run as root, so as root the server runs as the system user ``dbcrate-sandbox``
(created with ``useradd --system`` when missing) through ``setpriv`` or ``runuser``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import secrets
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import psycopg
from psycopg import sql

from dbcrate import pgbin
from dbcrate.sandbox.privileges import (
    SANDBOX_USER,
    SandboxError,
    drop_privileges_prefix,
    ensure_user,
    free_port,
)


class TempPostgres:
    """A throw-away PostgreSQL server. Use as a context manager, or ``start()``/``stop()``.

    ``url(dbname)`` never holds the password; pass ``password`` separately. ``start()``
    raises ``SandboxError`` (or ``ToolNotFound``/``DigestMismatch`` from pgbin); ``stop()``
    never raises for a server that is already gone and always removes the directory.
    """

    def __init__(
        self,
        major: int = 17,
        port: int | None = None,
        password: str | None = None,
        *,
        user: str = "postgres",
        cache_dir: Path | None = None,
        settings: dict[str, str] | None = None,
        parent: Path | None = None,
    ) -> None:
        self.major = major
        self.user = user
        self.password = password if password is not None else secrets.token_urlsafe(18)
        self.host = "127.0.0.1"
        self._requested_port = port
        self.port = port or 0
        self._cache_dir = cache_dir
        self._settings = settings or {}
        #: where the server's temporary directory is made (default: ``$TMPDIR``)
        self._parent = parent
        self.root: Path | None = None
        self.base: Path | None = None
        self._prefix: list[str] = []
        self._owner: pwd.struct_passwd | None = None

    # -- paths ---------------------------------------------------------------------------

    @property
    def bin_dir(self) -> Path:
        if self.root is None:
            raise SandboxError("the sandbox server is not started")
        return self.root / "bin"

    @property
    def data_dir(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    @property
    def socket_dir(self) -> Path:
        assert self.base is not None
        return self.base / "sock"

    @property
    def log_file(self) -> Path:
        assert self.base is not None
        return self.base / "server.log"

    def url(self, dbname: str = "postgres") -> str:
        """``postgresql://user@127.0.0.1:PORT/dbname`` (no password)."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    # -- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> TempPostgres:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def start(self) -> TempPostgres:
        """initdb and start the server; on failure everything created is removed."""
        self.root = pgbin.ensure(self.major, self._cache_dir)
        self.base = Path(tempfile.mkdtemp(prefix=f"dbcrate-pg{self.major}-", dir=self._parent))
        try:
            if os.geteuid() == 0:
                self._owner = ensure_user(SANDBOX_USER)
                self._prefix = drop_privileges_prefix(self._owner)
                os.chown(self.base, self._owner.pw_uid, self._owner.pw_gid)
            self.socket_dir.mkdir(mode=0o700)
            self._chown(self.socket_dir)
            self._check_binaries()
            self._initdb()
            self._start_server()
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop the server (immediate mode) and remove its directory. Idempotent."""
        base = self.base
        if base is None:
            return
        try:
            if (self.data_dir / "postmaster.pid").exists():
                self._run(["pg_ctl", "-D", str(self.data_dir), "-m", "immediate", "-w", "stop"],
                          check=False)  # fmt: skip
                self._kill_leftover()
        finally:
            self.base = None
            shutil.rmtree(base, ignore_errors=True)

    # -- helpers -------------------------------------------------------------------------

    def connect(self, dbname: str = "postgres", **kwargs: Any) -> psycopg.Connection[Any]:
        """An autocommit psycopg connection over TCP with the password."""
        return psycopg.connect(
            host=self.host, port=self.port, user=self.user, password=self.password,
            dbname=dbname, autocommit=True, connect_timeout=10, **kwargs,
        )  # fmt: skip

    def psql(
        self, query: str | sql.SQL | sql.Composed, db: str = "postgres", params: Sequence[Any] = ()
    ) -> list[tuple[Any, ...]]:
        """Run one statement in ``db`` (autocommit) and return its rows (``[]`` if none)."""
        with self.connect(db) as conn, conn.cursor() as cur:
            cur.execute(query.encode() if isinstance(query, str) else query,
                        params or None)  # fmt: skip
            return cur.fetchall() if cur.description else []

    def create_database(self, name: str) -> None:
        self.psql(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))

    def drop_database(self, name: str) -> None:
        """Drop ``name`` if it exists, disconnecting its sessions."""
        self.psql(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def database_exists(self, name: str) -> bool:
        return bool(self.psql("SELECT 1 FROM pg_database WHERE datname = %s", params=(name,)))

    @property
    def version(self) -> str:
        rows = self.psql("SHOW server_version")
        return str(rows[0][0]).split()[0]

    # -- internals -----------------------------------------------------------------------

    def _chown(self, path: Path) -> None:
        if self._owner is not None:
            os.chown(path, self._owner.pw_uid, self._owner.pw_gid)

    def _run(self, argv: list[str], *, check: bool = True) -> subprocess.CompletedProcess[str]:
        assert self.base is not None
        exe = str(self.bin_dir / argv[0])
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.base),
            "LC_ALL": "C",
            "TZ": "UTC",
        }
        proc = subprocess.run(
            [*self._prefix, exe, *argv[1:]], env=env, cwd=self.base,
            capture_output=True, text=True, check=False, timeout=120,
        )  # fmt: skip
        if check and proc.returncode != 0:
            raise SandboxError(
                f"{argv[0]} failed with status {proc.returncode}:\n"
                f"{(proc.stdout + proc.stderr)[-3000:]}{self._log_tail()}"
            )
        return proc

    def _log_tail(self) -> str:
        try:
            return "\nserver log:\n" + self.log_file.read_text("utf-8", "replace")[-3000:]
        except OSError:
            return ""

    def _check_binaries(self) -> None:
        proc = self._run(["postgres", "--version"], check=False)
        if proc.returncode != 0:
            raise SandboxError(
                f"the PostgreSQL binaries in {self.bin_dir} cannot be run by "
                f"{SANDBOX_USER if self._owner else 'this user'}: {proc.stderr.strip()}",
                hint="set DBCRATE_CACHE_DIR to a directory every user can read",
            )

    def _initdb(self) -> None:
        assert self.base is not None
        pwfile = self.base / "pwfile"
        fd = os.open(pwfile, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(self.password + "\n")
        self._chown(pwfile)
        try:
            self._run([
                "initdb", "-D", str(self.data_dir), "-U", self.user, f"--pwfile={pwfile}",
                "-E", "UTF8", "--locale=C", "--auth-host=scram-sha-256", "--auth-local=trust",
                "--no-sync", "--no-instructions",
            ])  # fmt: skip
        finally:
            pwfile.unlink(missing_ok=True)

    def _write_conf(self, port: int) -> None:
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            "fsync": "off",
            "synchronous_commit": "off",
            "full_page_writes": "off",
            "max_connections": "50",
            "shared_buffers": "'64MB'",
            "password_encryption": "'scram-sha-256'",
            **self._settings,
        }
        conf = self.data_dir / "postgresql.auto.conf"
        with open(conf, "a", encoding="utf-8") as f:
            f.write("".join(f"{k} = {v}\n" for k, v in settings.items()))

    def _start_server(self) -> None:
        attempts = 1 if self._requested_port else 3
        for attempt in range(attempts):
            self.port = self._requested_port or free_port()
            self._write_conf(self.port)
            proc = self._run(
                ["pg_ctl", "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", "60",
                 "start"], check=False,
            )  # fmt: skip
            if proc.returncode == 0:
                self._wait_ready()
                return
            if attempt == attempts - 1:
                raise SandboxError(
                    f"PostgreSQL {self.major} did not start on port {self.port}:\n"
                    f"{proc.stdout[-2000:]}{proc.stderr[-2000:]}{self._log_tail()}"
                )

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                self.psql("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def _kill_leftover(self) -> None:
        pidfile = self.data_dir / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            pid = int(pidfile.read_text().splitlines()[0])
            os.kill(pid, 9)
