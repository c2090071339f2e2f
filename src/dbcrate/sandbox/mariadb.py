"""A disposable MariaDB server on loopback (Debian's ``mariadbd``), for verified restores:
a temporary datadir under ``parent``, a free port, a random root password; as root the
server runs as the unprivileged ``dbcrate-sandbox`` user. ``stop()`` kills it and
removes everything."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

from dbcrate.errors import ToolNotFound
from dbcrate.sandbox.privileges import (
    SANDBOX_USER,
    SandboxError,
    drop_privileges_prefix,
    ensure_user,
    free_port,
)


def _tool(*names: str) -> str:
    for name in names:
        path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists()
                                      else None)
        if path:
            return path
    raise ToolNotFound(f"{names[0]} is not installed",
                       hint="install the MariaDB server (Debian: apt-get install "
                       "mariadb-server) on the verifier host")


class TempMariaDB:
    """A throw-away MariaDB server. Use as a context manager, or ``start()``/``stop()``.
    ``start()`` raises ``ToolNotFound`` or ``SandboxError``; ``stop()`` never raises."""

    def __init__(self, parent: Path | None = None) -> None:
        self._parent = parent
        self.password = secrets.token_urlsafe(18)
        self.port = 0
        self.root: Path | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.version = ""

    def __enter__(self) -> TempMariaDB:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    @property
    def socket(self) -> str:
        assert self.root is not None
        return str(self.root / "mysqld.sock")

    def url(self, database: str) -> str:
        return f"mysql://root@127.0.0.1:{self.port}/{quote(database, safe='')}"

    def start(self) -> TempMariaDB:
        mariadbd = _tool("mariadbd", "mysqld")
        install = _tool("mariadb-install-db", "mysql_install_db")
        self._client = _tool("mariadb", "mysql")
        self.root = Path(tempfile.mkdtemp(prefix="dbcrate-mariadb-", dir=self._parent))
        try:
            prefix: list[str] = []
            data = self.root / "data"
            data.mkdir()
            self.root.chmod(0o700)
            if os.geteuid() == 0:
                user = ensure_user(SANDBOX_USER)
                prefix = drop_privileges_prefix(user)
                os.chown(self.root, user.pw_uid, user.pw_gid)
                os.chown(data, user.pw_uid, user.pw_gid)
            done = subprocess.run(
                [*prefix, install, "--no-defaults", f"--datadir={data}",
                 "--auth-root-authentication-method=normal", "--skip-test-db",
                 "--skip-name-resolve"], capture_output=True, timeout=180, check=False)
            if done.returncode != 0:
                raise SandboxError("mariadb-install-db failed: "
                                   + done.stderr.decode(errors="replace")[-2000:])
            self.port = free_port()
            log = open(self.root / "server.log", "wb")  # noqa: SIM115 - the server's lifetime
            self.proc = subprocess.Popen(
                [*prefix, mariadbd, "--no-defaults", f"--datadir={data}", f"--port={self.port}",
                 "--bind-address=127.0.0.1", f"--socket={self.socket}",
                 f"--pid-file={self.root / 'mysqld.pid'}", "--skip-name-resolve",
                 "--skip-log-bin", "--event-scheduler=OFF", "--innodb-buffer-pool-size=64M",
                 "--innodb-flush-log-at-trx-commit=2", "--character-set-server=utf8mb4",
                 "--max-allowed-packet=64M", "--skip-symbolic-links"],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
            log.close()
            self._wait()
            self.sql(f"CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY "
                     f"'{self.password}'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT "
                     "OPTION;", socket=True)
            self.version = self.sql("SELECT VERSION()")[0][0]
        except BaseException:
            self.stop()
            raise
        return self

    def _wait(self) -> None:
        assert self.proc is not None and self.root is not None
        deadline = time.monotonic() + 120
        while True:
            if self.proc.poll() is not None:
                raise SandboxError("mariadbd exited:\n"
                                   + (self.root / "server.log").read_text()[-3000:])
            ping = subprocess.run([self._client, "--no-defaults", f"--socket={self.socket}",
                                   "-uroot", "-e", "SELECT 1"], capture_output=True,
                                  check=False)
            if ping.returncode == 0:
                return
            if time.monotonic() > deadline:
                raise SandboxError("mariadbd did not start within 120s")
            time.sleep(0.2)

    def stop(self) -> None:
        """Kill the server and remove its directory. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def sql(self, statements: str, database: str | None = None, *,
            socket: bool = False) -> list[list[str]]:
        """Run ``statements`` as root (over the unix socket: no password on argv); rows of
        raw tab-separated text. Raises ``SandboxError`` with the client's message."""
        argv = [self._client, "--no-defaults", f"--socket={self.socket}", "-uroot",
                "--batch", "--skip-column-names"]
        if database is not None:
            argv.append(f"--database={database}")
        proc = subprocess.run(argv, input=statements.encode(), capture_output=True,
                              check=False, timeout=600)
        if proc.returncode != 0:
            raise SandboxError(proc.stderr.decode(errors="replace").strip())
        return [line.split("\t") for line in proc.stdout.decode().splitlines()]
