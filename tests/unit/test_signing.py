"""`dbcrate keygen --signing` and the signing config keys (trusted_signers,
allowed_signers_file, signing_key_file) validated at load."""

from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from dbcrate import signing
from tests.lib.e2e import DBCRATE


def _signing_key(tmp: Path, name: str = "signing.key") -> tuple[Path, str]:
    path = tmp / name
    pem, public = signing.generate()
    signing.write_private(str(path), pem)
    return path, public.line()


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_keygen_signing(tmp_path: Path) -> None:
    key = tmp_path / "sign.key"
    proc = subprocess.run([DBCRATE, "keygen", "--signing", "-o", str(key)],
                          capture_output=True, text=True, check=True)
    line = proc.stdout.strip()
    assert line.startswith("ssh-ed25519 AAAA") and line.endswith(" dbcrate-manifest")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr
    public = subprocess.run(["ssh-keygen", "-y", "-f", str(key)], capture_output=True,
                            text=True, check=True).stdout
    assert public.split()[:2] == line.split()[:2]
    again = subprocess.run([DBCRATE, "keygen", "--signing", "-o", str(key)],
                           capture_output=True, text=True, check=False)
    assert again.returncode == 2 and "already exists" in again.stderr
    assert subprocess.run([DBCRATE, "keygen", "--signing"], capture_output=True,
                          check=False).returncode == 2


def test_signing_config_keys_are_validated_at_load(tmp_path: Path) -> None:
    from dbcrate import config
    from dbcrate.errors import ConfigError

    _, line = _signing_key(tmp_path)
    base = {"targets": {"local": {"path": str(tmp_path)}}, "encrypt": False,
            "jobs": [{"name": "orders", "url": "postgresql://h/orders"}]}
    job = config.parse({"backup": {**base, "trusted_signers": [line]}}).job("orders")
    assert job.trusted_signers == (line,)
    allowed = tmp_path / "allowed"
    allowed.write_text(f"ops {line.rsplit(' ', 1)[0]}\n")
    job = config.parse({"backup": {**base, "allowed_signers_file": str(allowed),
                                   "signing_key_file": "/k"}}).job("orders")
    assert job.trusted_signers == (line.rsplit(" ", 1)[0] + " ops",)
    assert job.signing_key_file == "/k"
    secretish = line.split()[1][:-8] + "AAAAAAA="
    for bad, key in [({"trusted_signers": "ssh-ed25519 AAAA"}, "trusted_signers"),
                     ({"trusted_signers": ["ssh-rsa AAAAB3 x"]}, "trusted_signers"),
                     ({"trusted_signers": [f"ssh-ed25519 {secretish}"]}, "trusted_signers"),
                     ({"allowed_signers_file": str(tmp_path / "nope")}, "allowed_signers_file")]:
        with pytest.raises(ConfigError, match=key) as info:
            config.parse({"backup": {**base, **bad}})
        assert info.value.exit_code == 2 and secretish not in info.value.message
