"""The effective config of an enrolled agent: its local TOML plus the server's job and
target tables for it, in the same typed ``Config`` (local ``[backup]`` defaults apply; a
local name wins). Sealed secrets (``KEY_sealed``) are opened with the agent's identity,
in memory only. A definition that sets a key the server may never set is refused."""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbcrate import config as config_mod
from dbcrate import wire
from dbcrate.config import Config
from dbcrate.errors import ConfigError
from dbcrate.operations.seal import unseal


def _open(table: Mapping[str, Any], where: str, identities: tuple[str, ...]) -> dict[str, Any]:
    bad = wire.forbidden_key(table)
    if bad:
        raise ConfigError("the control plane may not set this key", file="<control plane>",
                          key=f"{where}.{bad}")
    out: dict[str, Any] = {}
    for k, v in table.items():
        if k.endswith(wire.SEALED_SUFFIX) and isinstance(v, str):
            out[k.removesuffix(wire.SEALED_SUFFIX)] = unseal(v, identities)
        else:
            out[k] = v
    return out


def effective(path: Path, remote: Mapping[str, Any], identities: tuple[str, ...]) -> Config:
    """The local config at ``path`` merged with ``remote`` (``{version, jobs, targets}``).
    Raises ``ConfigError`` (or ``DecryptionError``) for an invalid result; the caller
    keeps the config it had."""
    raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    backup = raw.setdefault("backup", {})
    targets = backup.setdefault("targets", {})
    jobs = backup.setdefault("jobs", [])
    local_jobs = {str(j.get("name") or j.get("database")) for j in jobs if isinstance(j, dict)}
    for name, table in (remote.get("targets") or {}).items():
        if name not in targets:
            targets[name] = _open(table, f"targets.{name}", identities)
    for name, table in (remote.get("jobs") or {}).items():
        if name not in local_jobs:
            jobs.append({**_open(table, f"jobs.{name}", identities), "name": name})
    return config_mod.parse(raw, source=str(path))
