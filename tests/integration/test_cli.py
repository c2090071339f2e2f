"""The command line contract: keygen, target check, progress, --json, errors."""

from __future__ import annotations

import json
import stat
import subprocess
from pathlib import Path

from tests.lib.e2e import DBCRATE, local_target, make_setup
from tests.servers.postgres import PgDatabase


def run(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DBCRATE, *args], capture_output=True, text=True, cwd=cwd,
                          timeout=120, check=False)


def test_keygen_writes_private_identity_usable_by_age(tmp_path: Path) -> None:
    ident = tmp_path / "identity.txt"
    proc = run("keygen", "-o", str(ident))
    assert proc.returncode == 0, proc.stderr
    recipient = proc.stdout.strip()
    assert recipient.startswith("age1") and len(recipient) == 62
    assert stat.S_IMODE(ident.stat().st_mode) == 0o600
    assert f"# public key: {recipient}" in ident.read_text()
    # the real age CLI encrypts to the printed recipient and decrypts with the file
    enc = subprocess.run(["age", "-r", recipient], input=b"hello", capture_output=True,
                         check=True).stdout
    dec = subprocess.run(["age", "-d", "-i", str(ident)], input=enc, capture_output=True,
                         check=True).stdout
    assert dec == b"hello"
    again = run("keygen", "-o", str(ident))
    assert again.returncode == 2 and "refusing to overwrite" in again.stderr
    assert f"# public key: {recipient}" in ident.read_text()


def test_target_check(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, url="postgresql://x@127.0.0.1:9/x", password="p",
                       targets=[local_target(tmp_path / "backups")])
    proc = setup.run("target", "check", "local")
    assert proc.returncode == 0, proc.stderr
    assert "write, read, list and delete ok" in proc.stdout
    assert list((tmp_path / "backups").rglob("*")) == [] or all(
        p.is_dir() for p in (tmp_path / "backups").rglob("*"))
    blocked = tmp_path / "blocked"
    blocked.write_text("a file where a directory should be")
    bad = make_setup(tmp_path / "bad", url="postgresql://x@127.0.0.1:9/x", password="p",
                     targets=[local_target(blocked)])
    proc = bad.run("target", "check", "local")
    assert proc.returncode == 4 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("dbcrate: error: ") and "hint: " in proc.stderr


def test_backup_json_progress_and_list_table(tmp_path: Path, pg_db: PgDatabase) -> None:
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")], encryption="none")
    proc = setup.run("backup", "--json", "--progress")
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)
    assert result["ok"] is True and result["targets"] == ["local"]
    assert result["encrypted"] is False and result["size"] > 0
    assert "orders: pg_dump" in proc.stderr and "read " in proc.stderr  # progress line
    table = setup.run("list", check=True).stdout
    assert result["id"] in table and "UNENCRYPTED" in table


def test_usage_and_config_errors_are_clean(tmp_path: Path) -> None:
    proc = run("restore", "orders", "--latest", "--config", str(tmp_path / "none.toml"))
    assert proc.returncode == 2 and "no config file found" in proc.stderr
    proc = run("restore", "orders")
    assert proc.returncode == 2 and "one of the arguments" in proc.stderr
    setup = make_setup(tmp_path, url="postgresql://x@127.0.0.1:9/x", password="p",
                       targets=[local_target(tmp_path / "backups")])
    proc = setup.run("backup", "nosuchjob")
    assert proc.returncode == 2 and "no job named 'nosuchjob'" in proc.stderr
    assert "orders" in proc.stderr  # the hint lists the jobs that exist
    proc = setup.run("restore", "orders", "--at", "yesterday")
    assert proc.returncode == 2 and "ISO 8601" in proc.stderr
    proc = setup.run("restore", "orders", "--latest")
    assert proc.returncode == 9 and "no backups" in proc.stderr
    for p in (proc,):
        assert "Traceback" not in p.stderr
