"""Helpers for end-to-end tests: write a real config (``make_setup``), run the real CLI
(``Setup.run``), restore the latest backup (``restore``)."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbcrate.codecs.age import generate_identity
from dbcrate.config import TargetConfig
from dbcrate.config.keys import SECRET_KEYS

DBCRATE = str(Path(sys.executable).with_name("dbcrate"))
#: the stand-in tools (tests/standins/)
STANDINS = Path(__file__).resolve().parents[1] / "standins"
#: the repository root
ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Setup:
    """A config file on disk plus the identity file and key that go with it."""

    dir: Path
    config: Path
    identity: Path
    recipient: str
    aes_key: bytes

    def run(self, *args: str, env: Mapping[str, str] | None = None,
            check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``dbcrate --config CONFIG ARGS`` as a subprocess (the real user path)."""
        proc = subprocess.run(
            [DBCRATE, "--config", str(self.config), *args],
            capture_output=True, text=True, env={**os.environ, **(env or {})},
            timeout=300, check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"dbcrate {' '.join(args)} -> {proc.returncode}\n"
                                 f"stdout: {proc.stdout}\nstderr: {proc.stderr}")
        return proc

    def list_json(self, job: str, *extra: str) -> list[dict[str, Any]]:
        out = self.run("list", job, "--json", *extra, check=True).stdout
        value = json.loads(out)
        assert isinstance(value, list)
        return value


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    raise TypeError(type(value))


def target_table(target: TargetConfig, secrets_dir: Path) -> str:
    """A [backup.targets.NAME] table; secret options go through *_file keys."""
    lines = [f"[backup.targets.{target.name}]", f"type = {_toml(target.type)}"]
    for k, v in target.options.items():
        if k in SECRET_KEYS:  # secret_key, account_key, sas_token, password ...
            f = secrets_dir / f"{target.name}-{k}"
            f.write_text(str(v))
            f.chmod(0o600)
            lines.append(f"{k}_file = {_toml(str(f))}")
        else:
            lines.append(f"{k} = {_toml(v)}")
    return "\n".join(lines)


def make_setup(
    tmp: Path,
    *,
    url: str,
    password: str,
    targets: Sequence[TargetConfig],
    job: str = "orders",
    compression: str = "zstd",
    encryption: str = "age",
    job_extra: Mapping[str, Any] | None = None,
    engine: str = "postgres",
) -> Setup:
    tmp.mkdir(parents=True, exist_ok=True)
    identity, recipient = generate_identity()
    ident = tmp / "identity.txt"
    ident.write_text(f"# test identity\n{identity}\n")
    ident.chmod(0o600)
    key = os.urandom(32)
    pwfile = tmp / "pg-password"
    pwfile.write_text(password)
    pwfile.chmod(0o600)
    backup = [f"compression = {_toml(compression)}"]
    if encryption == "age":
        backup.append(f"recipients = [{_toml(recipient)}]")
    elif encryption == "aes-256-gcm":
        keyfile = tmp / "aes.key"
        keyfile.write_text(base64.b64encode(key).decode() + "\n")
        keyfile.chmod(0o600)
        backup.append(f"encryption_key_file = {_toml(str(keyfile))}")
    else:
        backup.append("encrypt = false")
    job_lines = [
        "[[backup.jobs]]", f"name = {_toml(job)}", f"engine = {_toml(engine)}",
        f"url = {_toml(url)}",
        f"password_file = {_toml(str(pwfile))}",
        f"targets = {_toml([t.name for t in targets])}",
    ]
    for k, v in (job_extra or {}).items():
        job_lines.append(f"{k} = {_toml(v)}")
    text = "\n\n".join([
        "[backup]\n" + "\n".join(backup),
        *(target_table(t, tmp) for t in targets),
        "\n".join(job_lines),
    ])
    cfg = tmp / "dbcrate.toml"
    cfg.write_text(text + "\n")
    return Setup(tmp, cfg, ident, recipient, key)


def local_target(path: Path, name: str = "local") -> TargetConfig:
    return TargetConfig(name=name, type="local", options={"path": str(path)})


def restore(setup: Setup, *args: str, job: str = "orders", to: str | None = None,
            password: str | None = None, env: Mapping[str, str] | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
    """``dbcrate restore JOB --latest --identity ID [--to TO] ARGS`` (``password`` as
    ``$DBCRATE_RESTORE_PASSWORD``); with ``check`` a non-zero exit fails the test."""
    extra = {**(env or {})}
    if password is not None:
        extra["DBCRATE_RESTORE_PASSWORD"] = password
    to_args = ["--to", to] if to is not None else []
    return setup.run("restore", job, "--latest", "--identity", str(setup.identity), *to_args,
                     *args, env=extra, check=check)
