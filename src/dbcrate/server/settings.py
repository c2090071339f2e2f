"""The control plane's data dir and ``server.toml`` (docs/control-plane.md).

The data dir is ``--data-dir``, else ``$DBCRATE_SERVER_DIR``, else the platform's data
dir; it holds ``server.toml``, ``server.db`` (SQLite, unless ``database`` names a
PostgreSQL URL), and ``ca/`` (the CA key, mode 0600, never in the DB).
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from dbcrate.config.timing import ScheduleProblem, parse_duration
from dbcrate.errors import ConfigError

FILE_NAME = "server.toml"
DB_NAME = "server.db"
KEYS = frozenset({
    "listen", "agent_listen", "agent_url", "database", "agent_cert_ttl", "heartbeat_interval",
    "offline_after", "tls_cert_file", "tls_key_file", "org", "notify_url_file",
})


def default_data_dir() -> Path:
    """``$DBCRATE_SERVER_DIR``, else /var/lib/dbcrate-server for root, else the user's
    data dir (platformdirs)."""
    if os.environ.get("DBCRATE_SERVER_DIR"):
        return Path(os.environ["DBCRATE_SERVER_DIR"])
    if os.geteuid() == 0:
        return Path("/var/lib/dbcrate-server")
    import platformdirs

    return Path(platformdirs.user_data_dir("dbcrate-server"))


def data_dir(given: str | None) -> Path:
    return Path(given).expanduser() if given else default_data_dir()


def host_port(value: str, key: str, source: str) -> tuple[str, int]:
    """``H:P`` (``[::1]:P`` for IPv6). Raises ``ConfigError`` naming the key."""
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(f"expected HOST:PORT, got {value!r}", file=source, key=f"server.{key}")
    return host.strip("[]"), int(port)


@dataclass(frozen=True)
class ServerSettings:
    """The ``[server]`` table, with the data dir it was read from."""

    dir: Path
    org: str = "default"
    listen: str = "127.0.0.1:8420"
    agent_listen: str = "127.0.0.1:8421"
    agent_url: str | None = None
    database: str | None = None
    agent_cert_ttl: timedelta = timedelta(hours=24)
    heartbeat_interval: timedelta = timedelta(seconds=30)
    offline_after: timedelta | None = None
    tls_cert_file: str | None = None
    tls_key_file: str | None = None
    #: a file of apprise URLs (secrets: one per line) told of agent.offline / backup.missed
    notify_url_file: str | None = None

    @property
    def database_url(self) -> str:
        return self.database or f"sqlite:///{self.dir / DB_NAME}"

    @property
    def effective_agent_url(self) -> str:
        if self.agent_url:
            return self.agent_url.rstrip("/")
        host, port = host_port(self.agent_listen, "agent_listen", FILE_NAME)
        if host in ("127.0.0.1", "::1"):
            host = "localhost"
        elif host in ("0.0.0.0", "::"):  # noqa: S104 - naming the wildcard, not binding it
            import socket

            host = socket.getfqdn()
        return f"https://{f'[{host}]' if ':' in host else host}:{port}"

    @property
    def offline(self) -> timedelta:
        return self.offline_after or self.heartbeat_interval * 3

    @property
    def ca_dir(self) -> Path:
        return self.dir / "ca"

    def notify_urls(self) -> list[str]:
        """The apprise URLs of ``notify_url_file`` (none if unset). Raises
        ``SecretError`` if the file cannot be read (the URLs are never shown)."""
        if not self.notify_url_file:
            return []
        from dbcrate.config import read_secret_file

        text = read_secret_file(self.notify_url_file, file=FILE_NAME,
                                key="server.notify_url_file")
        return [u.strip() for u in text.splitlines() if u.strip() and not u.startswith("#")]


def _duration(raw: Mapping[str, Any], key: str, source: str) -> timedelta | None:
    if key not in raw:
        return None
    try:
        return parse_duration(str(raw[key]))
    except ScheduleProblem as exc:
        raise ConfigError(str(exc), file=source, key=f"server.{key}") from None


def load(directory: Path) -> ServerSettings:
    """Read ``server.toml`` of ``directory``. Raises ``ConfigError`` (missing file: run
    ``dbcrate server init``; unknown key; bad value)."""
    path = directory / FILE_NAME
    try:
        raw_all = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"no {FILE_NAME} in {directory}",
                          hint="run `dbcrate server init --data-dir DIR` first") from None
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {FILE_NAME}: {exc}", file=str(path)) from None
    raw = raw_all.get("server", {})
    for k in raw:
        if k not in KEYS:
            raise ConfigError("unknown key", file=str(path), key=f"server.{k}",
                              hint=f"allowed: {', '.join(sorted(KEYS))}")
    out: dict[str, Any] = {}
    for k in ("org", "listen", "agent_listen", "agent_url", "database", "tls_cert_file",
              "tls_key_file", "notify_url_file"):
        if k in raw:
            if not isinstance(raw[k], str) or not raw[k]:
                raise ConfigError("expected a string", file=str(path), key=f"server.{k}")
            out[k] = raw[k]
    for k in ("listen", "agent_listen"):
        if k in out:
            host_port(out[k], k, str(path))
    for k in ("agent_cert_ttl", "heartbeat_interval", "offline_after"):
        d = _duration(raw, k, str(path))
        if d is not None:
            out[k] = d
    return ServerSettings(dir=directory, **out)


def _toml_value(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def write(directory: Path, values: Mapping[str, str]) -> Path:
    """Write a new ``server.toml`` holding ``values`` (strings). Atomic (rename)."""
    path = directory / FILE_NAME
    lines = ["# dbcrate control plane (docs/control-plane.md)", "[server]"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in values.items()]
    tmp = path.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # may hold a DB password
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    tmp.replace(path)
    return path
