"""Helpers for the control-plane tests: enrolling a real agent, its local config, the
real ``dbcrate agent`` on it, waiting on the server's API (never on time), and the
certificates curl/httpx present."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dbcrate.codecs.age import generate_identity
from tests.lib.agent import Agent
from tests.servers.controlplane import ControlPlane, run_cli

PATIENCE = 120.0


def wait_for(what: str, check: Callable[[], Any], log: Callable[[], str] | None = None) -> Any:
    deadline = time.monotonic() + PATIENCE
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}" + (f"\n{log()}" if log else ""))
        time.sleep(0.1)


def enroll(cp: ControlPlane, state: Path, name: str, *, token: str | None = None,
           check: bool = True) -> Any:
    token = token or cp.token(name)
    return run_cli("agent", "enroll", "--server", cp.url, "--token", token, "--name", name,
                   "--state-dir", str(state), check=check)


def agent_config(tmp: Path, state: Path, *, restore_url: str | None = None,
                 restore_password: str | None = None, local_job: str | None = None) -> Path:
    """A local config: age to a local recipient, one local target, ``[agent]`` with an
    identity file (so it can restore) and a ``scratch`` connection."""
    tmp.mkdir(parents=True, exist_ok=True)
    identity, recipient = generate_identity()
    (tmp / "identity.txt").write_text(identity + "\n")
    (tmp / "identity.txt").chmod(0o600)
    lines = ["[backup]", f"recipients = [{json.dumps(recipient)}]", "",
             "[backup.targets.local]", 'type = "local"',
             f"path = {json.dumps(str(tmp / 'backups'))}", ""]
    if local_job:
        lines += ["[[backup.jobs]]", local_job, ""]
    lines += ["[agent]", f"state_dir = {json.dumps(str(state))}",
              f"identity_file = {json.dumps(str(tmp / 'identity.txt'))}", ""]
    if restore_url:
        pw = tmp / "scratch-password"
        pw.write_text(restore_password or "")
        pw.chmod(0o600)
        lines += ["[agent.connections.scratch]", 'engine = "postgres"',
                  f"url = {json.dumps(restore_url)}", f"password_file = {json.dumps(str(pw))}"]
    path = tmp / "agent.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def start_agent(config: Path, state: Path) -> Agent:
    return Agent(config, state).started()


def online(api: httpx.Client, name: str) -> bool:
    return any(a["name"] == name and a["online"] for a in api.get("/api/v1/agents").json())


def command_done(api: httpx.Client, cid: str) -> dict[str, Any] | None:
    c = api.get(f"/api/v1/commands/{cid}").json()
    return c if c["status"] in ("ok", "failed", "lost") else None


def remote_files(state: Path) -> dict[str, Path]:
    d = state / "remote"
    return {"cert": d / "agent.crt", "key": d / "agent.key", "ca": d / "ca.crt"}


def self_signed(tmp: Path, *, name: str = "intruder") -> tuple[Path, Path]:
    """A certificate/key pair from another CA (self-signed)."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=1)).not_valid_after(now + timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return _write(tmp, name, cert, key)


def expired_from_ca(tmp: Path, ca_dir: Path, agent_key: Path) -> tuple[Path, Path]:
    """A certificate for ``agent_key`` signed by the real CA that expired an hour ago
    (what an agent holds after being offline past its certificate's life)."""
    ca_key = serialization.load_pem_private_key((ca_dir / "ca.key").read_bytes(), None)
    ca_cert = x509.load_pem_x509_certificate((ca_dir / "ca.crt").read_bytes())
    key = serialization.load_pem_private_key(agent_key.read_bytes(), None)
    assert isinstance(key, ec.EllipticCurvePrivateKey)
    assert isinstance(ca_key, ec.EllipticCurvePrivateKey)
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pg1")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(hours=2)).not_valid_after(now - timedelta(hours=1))
            .sign(ca_key, hashes.SHA256()))
    return _write(tmp, "expired", cert, key)


def _write(tmp: Path, name: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> tuple[Path, Path]:
    c, k = tmp / f"{name}.crt", tmp / f"{name}.key"
    c.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    k.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()))
    k.chmod(0o600)
    return c, k
