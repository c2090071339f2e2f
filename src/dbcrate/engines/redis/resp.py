"""A minimal RESP2 client over a socket (TCP, TLS or a unix socket): enough for INFO,
DBSIZE, CONFIG, SCAN, DUMP/PTTL/RESTORE and pipelining. No third-party dependency.

Connection and authentication failures become ``DatabaseUnreachable`` and
``AuthenticationFailed``; messages never hold the password.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
from collections.abc import Iterable, Sequence
from typing import IO, Any

from dbcrate.engines.redis.url import RedisTarget
from dbcrate.errors import AuthenticationFailed, DatabaseError, DatabaseUnreachable

DEFAULT_TIMEOUT = 10.0
_AUTH_MARKERS = ("WRONGPASS", "NOAUTH", "invalid password", "invalid username-password")

Arg = str | bytes | int


class RespError(Exception):
    """An error reply from the server (``-ERR ...``)."""


class ProtocolError(DatabaseError):
    """The peer does not speak RESP (or hung up mid-reply)."""


def _encode(args: Sequence[Arg]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        b = a if isinstance(a, bytes) else str(a).encode()
        out += [b"$%d\r\n" % len(b), b, b"\r\n"]
    return b"".join(out)


class RespClient:
    """One connection. ``call`` raises ``RespError`` for error replies; ``pipeline``
    returns them in place."""

    def __init__(self, sock: socket.socket, where: str) -> None:
        self._sock = sock
        self._file: IO[bytes] = sock.makefile("rb")
        self.where = where

    @classmethod
    def connect(cls, target: RedisTarget, *, timeout: float = DEFAULT_TIMEOUT) -> RespClient:
        """Connect, authenticate and SELECT the URL's database. Raises
        ``DatabaseUnreachable``, ``AuthenticationFailed`` or ``DatabaseError``."""
        try:
            sock = socket.create_connection((target.host, target.port), timeout=timeout)
        except OSError as e:
            reason = e.strerror or str(e) or type(e).__name__
            raise DatabaseUnreachable(
                f"cannot connect to redis at {target.where}: {reason}"
            ) from None
        try:
            if target.tls:
                sock = target.ssl_context().wrap_socket(
                    sock, server_hostname=target.sni or target.host
                )
        except (ssl.SSLError, OSError) as e:
            sock.close()
            raise DatabaseUnreachable(
                f"TLS handshake with redis at {target.where} failed: {e}",
                hint="check tls_cacert/tls_cert/tls_key and that the server speaks TLS",
            ) from None
        client = cls(sock, target.where)
        try:
            client.authenticate(target)
        except BaseException:
            client.close()
            raise
        return client

    @classmethod
    def connect_unix(cls, path: str, *, timeout: float = DEFAULT_TIMEOUT) -> RespClient:
        """Connect to a unix socket (no auth). Raises ``OSError`` if nobody listens."""
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(path)
        except OSError:
            sock.close()
            raise
        return cls(sock, path)

    def authenticate(self, target: RedisTarget) -> None:
        """AUTH (when there is a password) then PING and SELECT."""
        who = f"user {target.user!r}" if target.user else "the default user"
        try:
            if target.password is not None:
                args: list[Arg] = ["AUTH"]
                if target.user:
                    args.append(target.user)
                self.call(*args, target.password)
            self.call("PING")
            if target.db:
                self.call("SELECT", target.db)
        except RespError as e:
            text = target.scrub(str(e))
            if any(m.lower() in text.lower() for m in _AUTH_MARKERS):
                raise AuthenticationFailed(
                    f"redis at {target.where} rejected {who}: {text}"
                ) from None
            raise DatabaseError(f"redis at {target.where} refused us: {text}") from None

    # -- protocol ------------------------------------------------------------------------

    def _lost(self, e: OSError) -> DatabaseUnreachable:
        return DatabaseUnreachable(f"lost the connection to redis at {self.where}: {e}")

    def _send(self, payload: bytes) -> None:
        try:
            self._sock.sendall(payload)
        except OSError as e:
            raise self._lost(e) from None

    def _line(self) -> bytes:
        try:
            line = self._file.readline()
        except OSError as e:
            raise self._lost(e) from None
        if not line.endswith(b"\r\n"):
            raise ProtocolError(f"redis at {self.where} closed the connection")
        return line[:-2]

    def _read(self) -> Any:
        line = self._line()
        kind, rest = line[:1], line[1:]
        if kind == b"+":
            return rest.decode("utf-8", "replace")
        if kind == b"-":
            return RespError(rest.decode("utf-8", "replace"))
        if kind == b":":
            return int(rest)
        if kind == b"$":
            n = int(rest)
            if n < 0:
                return None
            data = self._file.read(n + 2)
            if len(data) != n + 2:
                raise ProtocolError(f"redis at {self.where} closed the connection")
            return data[:-2]
        if kind == b"*":
            n = int(rest)
            return None if n < 0 else [self._read() for _ in range(n)]
        raise ProtocolError(f"unexpected reply from redis at {self.where}: {line[:40]!r}")

    def call(self, *args: Arg) -> Any:
        """Send one command and return its reply. Raises ``RespError`` for an error reply,
        ``DatabaseUnreachable``/``ProtocolError`` if the connection fails."""
        self._send(_encode(args))
        reply = self._read()
        if isinstance(reply, RespError):
            raise reply
        return reply

    def pipeline(self, commands: Iterable[Sequence[Arg]]) -> list[Any]:
        """Send all ``commands``, then read all replies (error replies as ``RespError``
        values)."""
        cmds = list(commands)
        if not cmds:
            return []
        self._send(b"".join(_encode(c) for c in cmds))
        return [self._read() for _ in cmds]

    def info(self, section: str) -> dict[str, str]:
        """``INFO section`` as a dict."""
        raw = self.call("INFO", section)
        out: dict[str, str] = {}
        for line in bytes(raw).decode("utf-8", "replace").splitlines():
            if ":" in line and not line.startswith("#"):
                k, v = line.split(":", 1)
                out[k] = v.strip()
        return out

    def keyspace(self) -> dict[int, int]:
        """``{db: keys}`` for every non-empty database (from ``INFO keyspace``)."""
        out: dict[int, int] = {}
        for k, v in self.info("keyspace").items():
            if k.startswith("db") and k[2:].isdigit():
                fields = dict(p.split("=", 1) for p in v.split(",") if "=" in p)
                if int(fields.get("keys", "0")):
                    out[int(k[2:])] = int(fields["keys"])
        return out

    def config_get(self, name: str) -> str | None:
        """``CONFIG GET name``, or None when CONFIG is not allowed (managed servers)."""
        try:
            reply = self.call("CONFIG", "GET", name)
        except RespError:
            return None
        if isinstance(reply, list) and len(reply) >= 2 and isinstance(reply[1], bytes):
            return reply[1].decode("utf-8", "replace")
        return None

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._file.close()
        with contextlib.suppress(OSError):
            self._sock.close()

    def __enter__(self) -> RespClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
