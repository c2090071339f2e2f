"""What enrollment leaves in the state dir: ``remote/agent.key`` (ECDSA P-256, 0600),
``remote/agent.crt``, ``remote/ca.crt``, ``remote/identity.txt`` (the age identity that
opens sealed secrets, 0600) and ``remote/remote.json`` (server, agent URL, name, the CA's
SHA-256)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbcrate.errors import ControlPlaneError

DIR = "remote"


def write_private(path: Path, data: bytes, mode: int = 0o600) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename) with ``mode``."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)


@dataclass(frozen=True)
class Enrollment:
    """An agent's enrollment, read from its state dir."""

    dir: Path
    server: str
    agent_url: str
    name: str
    ca_sha256: str

    @property
    def key_path(self) -> Path:
        return self.dir / "agent.key"

    @property
    def cert_path(self) -> Path:
        return self.dir / "agent.crt"

    @property
    def ca_path(self) -> Path:
        return self.dir / "ca.crt"

    @property
    def identity_path(self) -> Path:
        return self.dir / "identity.txt"


def remote_dir(state_dir: Path) -> Path:
    return state_dir / DIR


def enrolled(state_dir: Path) -> bool:
    return (remote_dir(state_dir) / "remote.json").exists()


def load(state_dir: Path) -> Enrollment:
    """The enrollment of ``state_dir``. Raises ``ControlPlaneError`` if there is none."""
    d = remote_dir(state_dir)
    try:
        raw: dict[str, Any] = json.loads((d / "remote.json").read_text(encoding="utf-8"))
        return Enrollment(d, str(raw["server"]), str(raw["agent_url"]), str(raw["name"]),
                          str(raw["ca_sha256"]))
    except (OSError, ValueError, KeyError) as exc:
        raise ControlPlaneError(f"this agent is not enrolled ({d}: {exc})",
                                hint="run `dbcrate agent enroll --server URL --token T`") \
            from None


def save(state_dir: Path, info: dict[str, str], files: dict[str, bytes]) -> Enrollment:
    """Write the enrollment (private files 0600, remote.json last). Each file is atomic."""
    d = remote_dir(state_dir)
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    for name, data in files.items():
        write_private(d / name, data)
    write_private(d / "remote.json", json.dumps(info, indent=1).encode())
    return load(state_dir)
