"""Finding the MySQL/MariaDB client tools that match a server, and their versions.

MariaDB servers are dumped with ``mariadb-dump`` and restored with ``mariadb``; MySQL
servers with ``mysqldump`` and ``mysql``. The job options ``dump_tool`` and
``client_tool`` (a name on PATH or a path) override the choice. Tools are told apart by
their ``--version`` output (MariaDB's builds say "MariaDB"), since distributions install
``mysqldump`` as a link to ``mariadb-dump`` and the reverse.
"""

from __future__ import annotations

import logging
import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbcrate.engines.process import child_env
from dbcrate.errors import ConfigError, ToolNotFound

log = logging.getLogger(__name__)

_DUMP_TOOLS = {"mariadb": ("mariadb-dump", "mysqldump"), "mysql": ("mysqldump", "mariadb-dump")}
_CLIENT_TOOLS = {"mariadb": ("mariadb", "mysql"), "mysql": ("mysql", "mariadb")}
_VERSION_PATTERNS = (r"Distrib (\S+?),", r"\bfrom (\S+?)[, ]", r"\bVer (\S+)")
_INSTALL_HINT = (
    "install the client tools (Debian/Ubuntu: apt-get install mariadb-client, or MySQL's "
    "mysql-client for MySQL servers), or set the job's dump_tool / client_tool"
)


@dataclass(frozen=True)
class Tool:
    """One resolved executable: its path, the name to report, version and flavour."""

    path: str
    name: str
    version: str
    mariadb: bool


def _find(option: Any, candidates: tuple[str, ...], key: str) -> str:
    """The executable named by the job option ``key`` (a name or path), else the first of
    ``candidates`` on PATH. Raises ``ConfigError`` (bad option) or ``ToolNotFound``."""
    if option is not None:
        if not isinstance(option, str) or not option:
            raise ConfigError(f"{key} must be a program name or path", key=key)
        found = shutil.which(option)
        if found is None:
            raise ToolNotFound(f"{key} {option!r} not found or not executable",
                               hint=_INSTALL_HINT)
        return found
    for name in candidates:
        found = shutil.which(name)
        if found:
            return found
    raise ToolNotFound(f"none of {', '.join(candidates)} found on PATH", hint=_INSTALL_HINT)


def tool_version(path: str) -> tuple[str, bool]:
    """``(version, is_mariadb)`` from ``path --version``; ``("", False)``-like guesses
    when the output is unexpected. Raises ``ToolNotFound`` if it cannot run at all."""
    try:
        proc = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL, check=False, env=child_env())
    except (OSError, subprocess.TimeoutExpired) as e:
        raise ToolNotFound(f"cannot run {path} --version: {e}", hint=_INSTALL_HINT) from None
    text = proc.stdout.strip().splitlines()[0] if proc.stdout.strip() else ""
    version = ""
    for pattern in _VERSION_PATTERNS:
        m = re.search(pattern, text)
        if m:
            version = m.group(1)
            break
    return version, "mariadb" in text.lower()


def _resolve(path: str, flavour: str, role: str) -> Tool:
    version, mariadb = tool_version(path)
    if mariadb != (flavour == "mariadb"):
        log.warning("using %s (%s) for a %s server: no %s tool found", path,
                    "MariaDB" if mariadb else "MySQL", flavour, role)
    return Tool(path, Path(path).name, version, mariadb)


def probe_client(options: Mapping[str, Any]) -> str:
    """The client used to query a server before its flavour is known."""
    return _find(options.get("client_tool"), _CLIENT_TOOLS["mariadb"], "client_tool")


def dump_tool(flavour: str, options: Mapping[str, Any]) -> Tool:
    """The dump tool for a ``flavour`` ("mariadb" or "mysql") server. Raises
    ``ToolNotFound`` or ``ConfigError``."""
    path = _find(options.get("dump_tool"), _DUMP_TOOLS[flavour], "dump_tool")
    return _resolve(path, flavour, "dump")


def client_tool(flavour: str, options: Mapping[str, Any]) -> Tool:
    """The command-line client for a ``flavour`` server (restores). Raises as ``dump_tool``."""
    path = _find(options.get("client_tool"), _CLIENT_TOOLS[flavour], "client_tool")
    return _resolve(path, flavour, "client")
