"""A real OpenSSH server for tests: /usr/sbin/sshd on loopback, SFTP only.

Fixtures:
- ``sshd_server`` (session): the running server, with its own ed25519 host key, a
  dedicated user (password field ``*``: with PAM off a ``!``-locked account would be
  refused even with a key) whose authorized key is in the temp dir.
- ``sftp_target`` (function): a fresh directory and a ``TargetConfig`` for it.

Needs root (sshd switches to the user) and Debian's openssh-server; skips otherwise.
"""

from __future__ import annotations

import itertools
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dbcrate.config import TargetConfig
from dbcrate.sandbox import free_port

SSHD = "/usr/sbin/sshd"
USER = "dbcrate-sftp"
_dirs = itertools.count(1)


@dataclass
class SshServer:
    """A running sshd. ``base`` is a directory the user owns; keys are in ``home``."""

    port: int
    home: Path
    base: Path
    client_key: Path
    known_hosts: Path
    fingerprint: str
    uid: int
    gid: int
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def new_dir(self) -> Path:
        """A fresh, empty directory owned by the sftp user."""
        d = self.base / f"t{next(_dirs)}"
        d.mkdir(mode=0o700)
        os.chown(d, self.uid, self.gid)
        return d

    def target(self, path: Path | str, /, **options: Any) -> TargetConfig:
        opts: dict[str, Any] = {
            "host": "127.0.0.1", "port": self.port, "user": USER, "path": str(path),
            "private_key_file": str(self.client_key),
            "known_hosts_file": str(self.known_hosts), "connect_timeout": 5,
        }
        opts.update(options)
        return TargetConfig(name="sftp", type="sftp", options=opts)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def kill_sessions(self) -> None:
        """Kill every per-connection sshd child (the listener keeps running)."""
        assert self.process is not None
        for pid in _descendants(self.process.pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _descendants(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True,
                         check=False).stdout
    kids = [int(p) for p in out.split()]
    return [d for k in kids for d in (*_descendants(k), k)]


def _ensure_user() -> tuple[int, int]:
    try:
        pw = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--home-dir", "/nonexistent",
                        "--shell", "/usr/sbin/nologin", USER], check=True)
        pw = pwd.getpwnam(USER)
    subprocess.run(["usermod", "-p", "*", USER], check=True)  # not "!": key login works
    return pw.pw_uid, pw.pw_gid


def _wait_port(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {log.read_text()[-2000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(4).startswith(b"SSH-"):
                    return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not start: {log.read_text()[-2000:]}")


def start_sshd(root: Path) -> SshServer:
    """Start an sshd with everything under ``root`` (world-traversable for the user)."""
    if not Path(SSHD).exists() or shutil.which("ssh-keygen") is None:
        pytest.skip("openssh-server is not installed (scripts/install-system-deps.sh)")
    if os.geteuid() != 0:
        pytest.skip("the sshd fixture needs root (sshd switches to its own user)")
    uid, gid = _ensure_user()
    root.chmod(0o755)
    host_key, client_key = root / "host_ed25519", root / "client_ed25519"
    for k in (host_key, client_key):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(k)], check=True)
    auth = root / "authorized_keys"
    shutil.copy(client_key.with_suffix(".pub"), auth)
    auth.chmod(0o644)
    port = free_port()
    pub = host_key.with_suffix(".pub").read_text().split()
    known = root / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {pub[0]} {pub[1]}\n")
    fp = subprocess.run(["ssh-keygen", "-lf", str(host_key.with_suffix(".pub"))],
                        capture_output=True, text=True, check=True).stdout.split()[1]
    base = root / "data"
    base.mkdir(mode=0o755)
    conf = root / "sshd_config"
    conf.write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {host_key}\nUsePAM no\n"
        f"StrictModes no\nAuthorizedKeysFile {auth}\nPasswordAuthentication no\n"
        f"KbdInteractiveAuthentication no\nPidFile {root / 'sshd.pid'}\n"
        f"AllowUsers {USER}\nSubsystem sftp internal-sftp\nForceCommand internal-sftp\n"
        "LogLevel VERBOSE\nMaxStartups 100\nMaxSessions 50\n"
    )
    Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)
    log = root / "sshd.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(conf)], stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        _wait_port(port, proc, log)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return SshServer(port, root, base, client_key, known, fp, uid, gid, proc)


@pytest.fixture(scope="session")
def sshd_server() -> Iterator[SshServer]:
    root = Path(tempfile.mkdtemp(prefix="dbcrate-sshd-"))
    server = start_sshd(root)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def sftp_target(sshd_server: SshServer) -> TargetConfig:
    """A fresh directory on the server; options: host, port, user, path,
    private_key_file, known_hosts_file, connect_timeout=5."""
    return sshd_server.target(sshd_server.new_dir())
