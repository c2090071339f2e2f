"""An SSH/SFTP session for the sftp target: asyncssh on a private event loop thread.

asyncssh is asynchronous; dbcrate's Storage is not. Each ``SftpSession`` runs one event
loop in a daemon thread and hands coroutines to it (``run``), so any thread may use the
session. The connection opens on first use and again after it was lost.

The host key is checked before any credential is sent: against ``host_key_fingerprint``
(``SHA256:...``) if set, else against ``known_hosts_file`` (default
``~/.ssh/known_hosts``). A refused key is reported with the fingerprint the server
offered, ``host:port`` and where keys are pinned; nothing is written.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import asyncssh

from dbcrate.errors import StorageError, StorageUnavailable

T = TypeVar("T")


@dataclass(frozen=True)
class SshParams:
    """Where and how to log in. ``password``/``passphrase`` never appear in messages."""

    target: str
    host: str
    port: int
    user: str
    known_hosts_file: str
    host_key_fingerprint: str | None
    private_key_file: str | None
    passphrase: str | None
    password: str | None
    connect_timeout: float
    attempts: int = 3

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def pinned_in(self) -> str:
        if self.host_key_fingerprint:
            return f"host_key_fingerprint of target {self.target}"
        return self.known_hosts_file

    def __repr__(self) -> str:
        return f"SshParams({self.user}@{self.where})"


class _Client(asyncssh.SSHClient):
    """Checks the server's host key itself, so a refusal can show the offered key."""

    def __init__(self, params: SshParams) -> None:
        self.params = params
        self.offered: str | None = None

    def validate_host_public_key(
        self, host: str, addr: str, port: int, key: asyncssh.SSHKey
    ) -> bool:
        self.offered = f"{key.get_fingerprint('sha256')} ({key.get_algorithm()})"
        fingerprint = key.get_fingerprint("sha256")
        if self.params.host_key_fingerprint:
            return fingerprint == self.params.host_key_fingerprint
        path = Path(self.params.known_hosts_file).expanduser()
        try:
            known = asyncssh.read_known_hosts(str(path))
        except (OSError, ValueError):
            return False
        trusted = known.match(host, addr, port)[0]
        return any(k.get_fingerprint("sha256") == fingerprint for k in trusted)


class SftpSession:
    """One lazily opened SFTP connection, usable from any thread (see module docstring)."""

    def __init__(self, params: SshParams) -> None:
        self.params = params
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._conn: asyncssh.SSHClientConnection | None = None
        self._sftp: asyncssh.SFTPClient | None = None

    def __repr__(self) -> str:
        return f"SftpSession({self.params!r})"

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, daemon=True,
                                 name="dbcrate-sftp").start()
                self._loop = loop
            return self._loop

    def run(self, aw: Awaitable[T]) -> T:
        """Run ``aw`` on the session's loop and return its result (exceptions propagate)."""

        async def wrap() -> T:
            return await aw

        return asyncio.run_coroutine_threadsafe(wrap(), self._ensure_loop()).result()

    def sftp(self) -> asyncssh.SFTPClient:
        """The SFTP client, connecting first if needed. Raises ``StorageError``
        (``StorageUnavailable`` if the server cannot be reached)."""
        with self._lock:
            if self._sftp is not None and self._conn is not None and not self._closed():
                return self._sftp
        self._ensure_loop()
        for attempt in range(self.params.attempts):  # only an unreachable server is retried
            try:
                conn, sftp = self.run(self._connect())
                break
            except StorageUnavailable:
                if attempt + 1 >= self.params.attempts:
                    raise
                time.sleep(min(0.5 * 2**attempt, 4.0))
        with self._lock:
            self._conn, self._sftp = conn, sftp
        return sftp

    def _closed(self) -> bool:
        conn = self._conn
        return conn is None or conn.is_closed()

    def forget(self) -> None:
        """Drop the connection (after it broke); the next ``sftp()`` reconnects."""
        with self._lock:
            conn, self._conn, self._sftp = self._conn, None, None
        if conn is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(conn.abort)

    def connect_check(self) -> None:
        """Log in (host key, then credentials) without touching files. Raises ``StorageError``."""
        self.sftp()

    async def _connect(self) -> tuple[asyncssh.SSHClientConnection, asyncssh.SFTPClient]:
        p = self.params
        client = _Client(p)
        keys: list[asyncssh.SSHKey] | None = None
        if p.private_key_file:
            try:
                keys = [asyncssh.read_private_key(str(Path(p.private_key_file).expanduser()),
                                                  p.passphrase)]
            except (OSError, asyncssh.KeyImportError, asyncssh.KeyEncryptionError) as exc:
                reason = "a passphrase is needed or wrong" if isinstance(
                    exc, asyncssh.KeyEncryptionError) else type(exc).__name__
                raise StorageError(
                    f"target {p.target}: cannot read private_key_file "
                    f"{p.private_key_file}: {reason}",
                    "check the file (OpenSSH private key) and private_key_passphrase",
                ) from None
        try:
            conn = await asyncio.wait_for(asyncssh.connect(
                p.host, p.port, username=p.user, known_hosts=([], [], []),
                client_factory=lambda: client, client_keys=keys or (),
                password=p.password, agent_path=None, connect_timeout=p.connect_timeout,
                login_timeout=p.connect_timeout, config=(),
                preferred_auth=("publickey" if keys else "") + (
                    ",password,keyboard-interactive" if p.password else ""),
            ), timeout=p.connect_timeout * 2)
        except asyncssh.HostKeyNotVerifiable:
            raise StorageError(
                f"target {p.target}: the host key of {p.where} is not trusted: the server "
                f"offered {client.offered or 'an unreadable key'}, which is not pinned in "
                f"{p.pinned_in}; refused before login, nothing was written",
                f"run `ssh-keyscan -p {p.port} {p.host}`, verify the fingerprint out of band "
                "(e.g. `ssh-keygen -lf /etc/ssh/ssh_host_ed25519_key.pub` on the server), then "
                f"add the key to {p.known_hosts_file} or set host_key_fingerprint",
            ) from None
        except asyncssh.PermissionDenied:
            used = " and ".join(x for x in (
                f"private_key_file {p.private_key_file}" if keys else "",
                "password" if p.password else "") if x) or "no credential (none configured)"
            raise StorageError(
                f"target {p.target}: user {p.user} was refused at {p.where}: {used} "
                "not accepted",
                "check user, private_key_file / password and the server's authorized_keys",
            ) from None
        except (TimeoutError, OSError, asyncssh.Error) as exc:
            raise StorageUnavailable(
                f"target {p.target}: cannot connect to {p.where}: {_reason(exc)}",
                "check host and port, that sshd runs and that the network allows it",
            ) from None
        try:
            sftp = await conn.start_sftp_client()
        except (OSError, asyncssh.Error) as exc:
            conn.abort()
            raise StorageError(
                f"target {p.target}: {p.where} refused the sftp subsystem: {_reason(exc)}",
                "enable `Subsystem sftp internal-sftp` in the server's sshd_config",
            ) from None
        return conn, sftp

    def close(self) -> None:
        """Close the connection and stop the loop thread."""
        self.forget()
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)


def _reason(exc: BaseException) -> str:
    if isinstance(exc, asyncio.TimeoutError):
        return "timed out"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror.lower()
    text = str(exc) or type(exc).__name__
    return text[0].lower() + text[1:]
