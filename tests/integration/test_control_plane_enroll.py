"""Enrollment and the agents' mTLS listener: refusals (curl, httpx: no certificate,
another CA's, an expired one, a revoked agent), a token used twice, a CA mismatch that
writes nothing, renewal with the pinned key only, an agent enrolled with no config file."""

from __future__ import annotations

import os
import ssl
import subprocess
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from dbcrate.agent.remote.client import Client
from dbcrate.agent.remote.enroll import csr_for
from dbcrate.agent.remote.files import load
from tests.lib.controlplane import enroll, expired_from_ca, remote_files, self_signed, wait_for
from tests.lib.e2e import DBCRATE
from tests.servers.controlplane import ControlPlane


def curl(cp: ControlPlane, state: Path | None, *extra: str) -> subprocess.CompletedProcess[str]:
    ca = cp.dir / "ca" / "ca.crt"
    args = ["curl", "-sS", "--max-time", "20", "-o", "/dev/stderr", "-w", "%{http_code}",
            "--cacert", str(ca), *extra]
    if state is not None:
        f = remote_files(state)
        args += ["--cert", str(f["cert"]), "--key", str(f["key"])]
    return subprocess.run([*args, f"{cp.agent_url}/agent/v1/config"], capture_output=True,
                          text=True, timeout=30)



def test_enroll_then_mtls_refusals(control_plane: ControlPlane, tmp_path: Path) -> None:
    state = tmp_path / "state"
    enroll(control_plane, state, "mtls1")
    for name in ("agent.key", "identity.txt"):
        assert (state / "remote" / name).stat().st_mode & 0o777 == 0o600
    ok = curl(control_plane, state)
    assert ok.stdout == "200", ok.stderr
    # no certificate: the handshake is refused (curl never gets an HTTP status)
    assert curl(control_plane, None).stdout in ("000", "")
    # another CA's certificate
    cert, key = self_signed(tmp_path)
    other = curl(control_plane, None, "--cert", str(cert), "--key", str(key))
    assert other.stdout in ("000", ""), other
    # an expired certificate from the right CA, for the enrolled key
    cert, key = expired_from_ca(tmp_path, control_plane.dir / "ca",
                                remote_files(state)["key"])
    old = curl(control_plane, None, "--cert", str(cert), "--key", str(key))
    assert old.stdout in ("000", ""), old
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{control_plane.agent_url}/agent/v1/config", timeout=20,
                  verify=ssl.create_default_context(
                      cafile=str(control_plane.dir / "ca" / "ca.crt")))
    # revoked: 403 at once
    admin = control_plane.api("admin@acme.test")
    assert admin.post("/api/v1/agents/mtls1/revoke").status_code == 200
    assert curl(control_plane, state).stdout == "403"
    # enrolled again (a new key): the new certificate works, the old one stays refused
    again = tmp_path / "again"
    enroll(control_plane, again, "mtls1")
    assert curl(control_plane, again).stdout == "200"
    assert curl(control_plane, state).stdout == "403"


def test_token_used_twice_and_ca_mismatch(control_plane: ControlPlane, tmp_path: Path) -> None:
    token = control_plane.token("once")
    enroll(control_plane, tmp_path / "a", "once", token=token)
    second = enroll(control_plane, tmp_path / "b", "once", token=token, check=False)
    assert second.returncode == 15, second.stderr
    assert "already used" in second.stderr
    assert not (tmp_path / "b" / "remote").exists()
    assert control_plane.rows("SELECT COUNT(*) FROM agents WHERE name = 'once'") == [(1,)]
    # a token naming another CA: refused after the server answers, nothing written
    parts = control_plane.token("mismatch").split(".")
    forged = ".".join([parts[0], parts[1], "0" * 64])
    bad = enroll(control_plane, tmp_path / "c", "mismatch", token=forged, check=False)
    assert bad.returncode == 15, bad.stderr
    assert "does not match" in bad.stderr
    assert not (tmp_path / "c").exists() or not any((tmp_path / "c").rglob("*"))


def test_renewal_same_key_only(control_plane: ControlPlane, tmp_path: Path) -> None:
    state = tmp_path / "state"
    enroll(control_plane, state, "renew1")
    client = Client(load(state))
    before = client.cert()
    life = before.not_valid_after_utc - before.not_valid_before_utc
    assert life.total_seconds() == 60  # agent_cert_ttl = 60s
    after = client.renew()
    assert after.serial_number != before.serial_number
    assert after.public_key() == before.public_key()
    assert client.call("GET", "/config")["version"] == 0  # the new certificate works
    other = csr_for(ec.generate_private_key(ec.SECP256R1()), "renew1")
    r = client.http().post("/renew", json={"csr": other})
    assert r.status_code == 422 and "pinned" in r.text
    assert x509.load_pem_x509_certificate(load(state).cert_path.read_bytes()) \
        .serial_number == after.serial_number
    client.close()





def test_enrolled_agent_without_a_config_file(control_plane: ControlPlane,
                                              tmp_path: Path) -> None:
    """No config anywhere: enroll (token from a file, never in argv) writes STATE/agent.toml,
    and ``dbcrate agent --state-dir STATE`` runs on it and comes online."""
    state = tmp_path / "state"
    token_file = tmp_path / "token"
    token_file.write_text(control_plane.token("bare") + "\n")
    env = {k: v for k, v in os.environ.items() if k != "DBCRATE_CONFIG"}
    done = subprocess.run([DBCRATE, "agent", "enroll", "--server", control_plane.url,
                           "--token-file", str(token_file), "--name", "bare",
                           "--state-dir", str(state)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "agent.toml" in done.stdout
    assert "[agent]" in (state / "agent.toml").read_text()
    log = tmp_path / "agent.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([DBCRATE, "agent", "--state-dir", str(state)], cwd=tmp_path,
                                env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        admin = control_plane.api("admin@acme.test")
        wait_for("bare online", lambda: any(a["name"] == "bare" and a["online"]
                                            for a in admin.get("/api/v1/agents").json()),
                 log.read_text)
    finally:
        proc.terminate()
        assert proc.wait(timeout=120) == 0, log.read_text()
    # a second enroll with a used token: refused (exit 15), the written config untouched
    again = subprocess.run([DBCRATE, "agent", "enroll", "--server", control_plane.url,
                            "--token-file", str(token_file), "--state-dir",
                            str(tmp_path / "other")], cwd=tmp_path, env=env,
                           capture_output=True, text=True, timeout=120, check=False)
    assert again.returncode == 15, again.stderr
    assert not (tmp_path / "other" / "agent.toml").exists()
