"""A Redis connection target: URL parsing, TLS settings, redis-cli argv and environment.

Accepts ``redis://[user@]host[:port][/db]`` and ``rediss://...`` (TLS). A password inside
the URL is used when the job gives none, and is dropped from everything we build. The
password reaches redis-cli only as ``REDISCLI_AUTH`` in its environment, never argv.

TLS job options: ``tls`` (force TLS with a ``redis://`` URL), ``tls_cacert``,
``tls_cert``, ``tls_key``, ``tls_sni``, ``tls_insecure`` (skip certificate checks).
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

from dbcrate.errors import ConfigError

DEFAULT_PORT = 6379
#: inherited variables that would change how redis-cli authenticates


@dataclass(frozen=True)
class RedisTarget:
    """Where one Redis server lives. Never holds the password in ``repr``."""

    host: str
    port: int
    db: int = 0
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    tls: bool = False
    cacert: str | None = None
    cert: str | None = None
    key: str | None = None
    sni: str | None = None
    insecure: bool = False

    @classmethod
    def parse(
        cls, url: str, password: str | None = None, options: Mapping[str, Any] | None = None
    ) -> RedisTarget:
        """Parse ``url`` with the TLS ``options``. Raises ``ConfigError`` (never quoting
        the password) for anything but a ``redis://``/``rediss://`` URL."""
        opts = options or {}
        try:
            parts = urlsplit(url)
            port = parts.port or DEFAULT_PORT
        except ValueError:
            raise ConfigError(
                "invalid redis url (expected redis://[user@]host:port[/db])"
            ) from None
        if parts.scheme not in ("redis", "rediss"):
            raise ConfigError(
                f"unsupported url scheme {parts.scheme!r} for redis",
                hint="use redis://[user@]host:port[/db] or rediss:// for TLS",
            )
        path = parts.path.strip("/")
        if path and not path.isdigit():
            # not quoted: an unencoded / in a password would put part of it here
            raise ConfigError("invalid redis database in the url (expected a number)",
                              hint="percent-encode / ? # @ in a password")
        url_password = unquote(parts.password) if parts.password else None
        user = unquote(parts.username) if parts.username else None
        return cls(
            host=parts.hostname or "localhost",
            port=port,
            db=int(path or 0),
            user=user or None,
            password=password if password is not None else url_password,
            tls=parts.scheme == "rediss" or bool(opts.get("tls", False)),
            cacert=_opt_str(opts, "tls_cacert"),
            cert=_opt_str(opts, "tls_cert"),
            key=_opt_str(opts, "tls_key"),
            sni=_opt_str(opts, "tls_sni"),
            insecure=bool(opts.get("tls_insecure", False)),
        )

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def cli_args(self) -> list[str]:
        """redis-cli connection arguments (no password: see ``cli_env``)."""
        args = ["-h", self.host, "-p", str(self.port), "--no-auth-warning"]
        if self.user:
            args += ["--user", self.user]
        if self.tls:
            args.append("--tls")
            for flag, value in (("--cacert", self.cacert), ("--cert", self.cert),
                                ("--key", self.key), ("--sni", self.sni)):
                if value:
                    args += [flag, value]
            if self.insecure:
                args.append("--insecure")
        return args

    def cli_env(self) -> dict[str, str]:
        """redis-cli's own variables: ``REDISCLI_AUTH`` when there is a password. Nothing
        inherited: the spawner adds the allowlisted rest (``process.child_env``)."""
        env: dict[str, str] = {}
        if self.password is not None:
            env["REDISCLI_AUTH"] = self.password
        return env

    def ssl_context(self) -> ssl.SSLContext:
        """A client TLS context built from the TLS options."""
        ctx = ssl.create_default_context(cafile=self.cacert)
        if self.cert:
            ctx.load_cert_chain(self.cert, self.key)
        if self.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        return ctx

    def scrub(self, text: str) -> str:
        """``text`` with the password masked (defence in depth for messages)."""
        return text.replace(self.password, "***") if self.password else text


def _opt_str(opts: Mapping[str, Any], key: str) -> str | None:
    value = opts.get(key)
    if value is None:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a string")
    return value
