"""A MySQL/MariaDB connection target: URL parsing and the private client defaults file.

Accepts ``mysql://user@host:port/database`` (also ``mariadb://``), with percent-encoding
for odd user or database names, and a few query parameters that become client options
(``socket``, ``protocol``, ``ssl``, ``ssl-ca``, ...; see docs/engines/mysql.md). The
password reaches the tools only through a defaults file (``[client]`` section) in a
private temporary directory (0700 directory, 0600 file) that is removed when the tool
is done; never argv, never a message.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote, urlsplit

from dbcrate.errors import ConfigError
from dbcrate.private_files import secret_file

DEFAULT_PORT = 3306
DEFAULT_CONNECT_TIMEOUT = "10"
#: URL query parameter -> client option name (the ``[client]`` key)
QUERY_OPTIONS: dict[str, str] = {
    "socket": "socket",
    "protocol": "protocol",
    "ssl": "ssl",
    "ssl-ca": "ssl-ca",
    "ssl-capath": "ssl-capath",
    "ssl-cert": "ssl-cert",
    "ssl-key": "ssl-key",
    "ssl-cipher": "ssl-cipher",
    "ssl-verify-server-cert": "ssl-verify-server-cert",
    "ssl-mode": "ssl-mode",
    "tls-version": "tls-version",
    "connect-timeout": "connect-timeout",
    "default-character-set": "default-character-set",
    "default-auth": "default-auth",
    "plugin-dir": "plugin-dir",
}
#: options written only when a query parameter asks for them (no value = flag)
_FLAG_OPTIONS = {"ssl", "ssl-verify-server-cert"}
#: options every client tool (MariaDB's and MySQL's) knows
_CORE_OPTIONS = {"socket", "protocol", "default-character-set"}
_SCHEMES = ("mysql", "mariadb")


def _option_value(value: str) -> str:
    """``value`` quoted for a MySQL option file: double quotes, with the escapes the
    option-file reader undoes (backslash, quotes, control characters)."""
    out = value.replace("\\", "\\\\").replace('"', '\\"')
    out = out.replace("\n", "\\n").replace("\r", "\\r").replace("\t", "\\t")
    return f'"{out}"'


@dataclass(frozen=True)
class MyTarget:
    """Where one MySQL/MariaDB database lives. ``options`` are client options (no password)."""

    host: str
    port: int
    user: str
    database: str
    options: Mapping[str, str] = field(default_factory=dict)
    password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str, password: str | None = None) -> MyTarget:
        """Parse ``url``; a password inside it is used when ``password`` is None. Raises
        ``ConfigError`` for a URL that is not ``mysql://[user@]host[:port]/database``."""
        try:
            parts = urlsplit(url)
            port = parts.port
        except ValueError:  # never quote the parse error: it can hold part of a password
            raise ConfigError("invalid mysql url (the port is not a number)",
                              hint="expected mysql://user@host:port/database; percent-encode "
                              "/ ? # @ : in a password") from None
        if parts.scheme not in _SCHEMES:
            raise ConfigError("invalid mysql url (expected mysql://user@host:port/database)")
        database = unquote(parts.path.lstrip("/"))
        if not database or "/" in parts.path.lstrip("/"):
            raise ConfigError(
                "the mysql url must name exactly one database (mysql://user@host/database)"
            )
        options: dict[str, str] = {"connect-timeout": DEFAULT_CONNECT_TIMEOUT}
        for key, value in parse_qsl(parts.query, keep_blank_values=True):
            name = key.replace("_", "-")
            if name not in QUERY_OPTIONS:
                raise ConfigError(
                    f"unknown mysql url parameter {key!r}",
                    hint=f"supported: {', '.join(sorted(QUERY_OPTIONS))}",
                )
            options[QUERY_OPTIONS[name]] = value
        url_password = unquote(parts.password) if parts.password is not None else None
        return cls(
            host=unquote(parts.hostname or "localhost"),
            port=port or DEFAULT_PORT,
            user=unquote(parts.username or ""),
            database=database,
            options=options,
            password=password if password is not None else url_password,
        )

    @property
    def where(self) -> str:
        """``host:port`` (or the socket) for messages."""
        if "socket" in self.options:
            return f"socket {self.options['socket']}"
        return f"{self.host}:{self.port}"

    def defaults_text(self) -> str:
        """The ``[client]`` option file content, password included (goes to a 0600 file)."""
        lines = ["[client]", f"host={_option_value(self.host)}", f"port={self.port}"]
        if self.user:
            lines.append(f"user={_option_value(self.user)}")
        if self.password is not None:
            lines.append(f"password={_option_value(self.password)}")
        options = {"default-character-set": "utf8mb4", **self.options}
        for key, value in options.items():
            # "loose-": a tool that lacks the option (mariadb-dump has no connect-timeout,
            # MySQL 8 has no --ssl) ignores it instead of refusing to start
            prefix = "" if key in _CORE_OPTIONS else "loose-"
            if key in _FLAG_OPTIONS and value in ("", "1", "true", "on"):
                lines.append(f"{prefix}{key}")
            elif key in _FLAG_OPTIONS and value in ("0", "false", "off"):
                lines.append(f"{prefix}skip-{key}")
            else:
                lines.append(f"{prefix}{key}={_option_value(value)}")
        return "\n".join(lines) + "\n"

    @contextlib.contextmanager
    def defaults_file(self) -> Iterator[str]:
        """A private defaults file for ``--defaults-file=`` (``private_files.secret_file``:
        memory-backed where possible, 0700 directory, 0600 file, removed on every exit
        path). Raises ``OSError`` if it cannot be created (nothing is left behind)."""
        with secret_file("client.cnf", self.defaults_text(),
                         what="client defaults file") as path:
            yield str(path)

    def scrub(self, text: str) -> str:
        """``text`` with the password masked (defence in depth for messages)."""
        return text.replace(self.password, "***") if self.password else text
