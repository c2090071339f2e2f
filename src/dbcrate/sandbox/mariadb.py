"""A disposable MariaDB server on loopback (an installed ``mariadbd``), for verified
restores and the tests: a temporary datadir under ``parent``, a free port, a random root
password (for ``root@127.0.0.1`` and ``root@localhost``); as root the server runs as the
unprivileged ``dbcrate-sandbox`` user. ``stop()`` kills it and removes everything.

``find_server`` picks the binary for a backup: one of the backup's flavour (MariaDB or
MySQL) whose release series (``X.Y``) is the backup server's or newer."""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
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

_VERSION = re.compile(r"(\d+)\.(\d+)(?:\.(\d+))?")
_INSTALL_HINT = ("install a MariaDB server of the backup's version or newer on the verifier "
                 "host (Debian: apt-get install mariadb-server)")


def _tool(*names: str) -> str:
    for name in names:
        path = shutil.which(name) or (f"/usr/sbin/{name}" if Path(f"/usr/sbin/{name}").exists()
                                      else None)
        if path:
            return path
    raise ToolNotFound(f"{names[0]} is not installed", hint=_INSTALL_HINT)


def series(version: str) -> tuple[int, int] | None:
    """The release series ``(X, Y)`` of a version string (``10.11.19-MariaDB...``)."""
    m = _VERSION.search(version)
    return (int(m.group(1)), int(m.group(2))) if m else None


def flavour(version: str) -> str:
    """``mariadb`` if ``version`` (a server's ``VERSION()`` or ``--version``) says so,
    else ``mysql``."""
    return "mariadb" if "mariadb" in version.lower() else "mysql"


@dataclass(frozen=True)
class ServerBinary:
    path: str
    version: str
    flavour: str


def installed(path: str) -> ServerBinary | None:
    """What ``path --version`` says (None if it cannot be run)."""
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                             check=False).stdout
    except OSError:
        return None
    m = re.search(r"Ver\s+(\S+)", out)
    if not m:
        return None
    return ServerBinary(path, m.group(1), flavour(out))


def choose(backup_version: str, found: list[ServerBinary]) -> ServerBinary:
    """The binary among ``found`` to verify a backup of ``backup_version`` with: the
    backup's flavour, release series the same or newer. Pure. Raises ``ToolNotFound``
    naming the versions otherwise."""
    want, need = flavour(backup_version), series(backup_version)
    same = [b for b in found if b.flavour == want]
    if not same:
        have = ", ".join(f"{b.path} ({b.version})" for b in found) or "none"
        raise ToolNotFound(
            f"no {'MariaDB' if want == 'mariadb' else 'MySQL'} server binary is installed to "
            f"verify a backup of {backup_version} (found: {have})",
            hint="a dump is verified by a server of its own flavour; " + _INSTALL_HINT)
    if need is None:
        return same[0]
    newer = [b for b in same if (series(b.version) or (0, 0)) >= need]
    if not newer:
        have = ", ".join(b.version for b in same)
        raise ToolNotFound(
            f"the installed server ({have}) is older than the backup's server "
            f"({backup_version}): verify needs {need[0]}.{need[1]} or newer",
            hint=_INSTALL_HINT)
    return newer[0]


def find_server(backup_version: str) -> ServerBinary:
    """The installed ``mariadbd``/``mysqld`` to verify a backup of ``backup_version``.
    Raises ``ToolNotFound``."""
    seen: list[ServerBinary] = []
    for name in ("mariadbd", "mysqld"):
        try:
            path = _tool(name)
        except ToolNotFound:
            continue
        real = os.path.realpath(path)
        if any(os.path.realpath(b.path) == real for b in seen):
            continue
        b = installed(path)
        if b is not None:
            seen.append(b)
    return choose(backup_version, seen)


class TempMariaDB:
    """A throw-away MariaDB server. Use as a context manager, or ``start()``/``stop()``.
    ``start()`` raises ``ToolNotFound`` or ``SandboxError``; ``stop()`` never raises.
    ``server``: the ``mariadbd`` to run (default: the installed one)."""

    def __init__(self, parent: Path | None = None, *, password: str | None = None,
                 server: str | None = None) -> None:
        self._parent = parent
        self._server = server
        self.password = password or secrets.token_urlsafe(18)
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

    def url(self, database: str, user: str = "root") -> str:
        return (f"mysql://{quote(user, safe='')}@127.0.0.1:{self.port}/"
                f"{quote(database, safe='')}")

    def start(self) -> TempMariaDB:
        mariadbd = self._server or _tool("mariadbd", "mysqld")
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
            self._run(f"CREATE OR REPLACE USER 'root'@'127.0.0.1' IDENTIFIED BY "
                      f"'{self.password}'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT "
                      f"OPTION; ALTER USER 'root'@'localhost' IDENTIFIED BY '{self.password}';",
                      [])
            self._write_defaults()
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

    def _write_defaults(self) -> None:
        """The client's option file (0600, not readable by the sandbox user): socket,
        user and password, so no password is ever on an argv."""
        assert self.root is not None
        path = self.root / "client.cnf"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"[client]\nsocket={self.socket}\nuser=root\npassword={self.password}\n"
                    "default-character-set=utf8mb4\n")

    def stop(self) -> None:
        """Kill the server and remove its directory. Idempotent."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None
        if self.root is not None:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = None

    def _run(self, statements: str, argv: list[str]) -> list[list[str]]:
        assert self.root is not None
        base = ([self._client, f"--defaults-file={self.root / 'client.cnf'}"]
                if (self.root / "client.cnf").exists()
                else [self._client, "--no-defaults", f"--socket={self.socket}", "-uroot"])
        proc = subprocess.run([*base, "--batch", "--skip-column-names", *argv],
                              input=statements.encode(), capture_output=True, check=False,
                              timeout=600)
        if proc.returncode != 0:
            raise SandboxError(proc.stderr.decode(errors="replace").strip())
        return [line.split("\t") for line in proc.stdout.decode().splitlines()]

    def sql(self, statements: str, database: str | None = None) -> list[list[str]]:
        """Run ``statements`` as root over the unix socket (the password from a private
        option file); rows of raw tab-separated text. Raises ``SandboxError`` with the
        client's message."""
        return self._run(statements, [] if database is None else [f"--database={database}"])

    def database_exists(self, name: str) -> bool:
        rows = self.sql("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE "  # noqa: S608
                        f"SCHEMA_NAME = CONVERT(0x{name.encode().hex()} USING utf8mb4)")
        return rows[0][0] == "1"

    def create_database(self, name: str) -> None:
        self.sql(f"CREATE DATABASE {ident(name)}")

    def drop_database(self, name: str) -> None:
        self.sql(f"DROP DATABASE IF EXISTS {ident(name)}")


def ident(name: str) -> str:
    """A backquoted MariaDB identifier."""
    return "`" + name.replace("`", "``") + "`"
