"""``dbcrate verify`` of MySQL/MariaDB backups in a disposable ``mariadbd`` (Debian's):
the sample database passes with every row counted at backup time and a user check; a
dump damaged before it was stored (digests rewritten to match) fails. Nothing is left
in verify_dir."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lib.e2e import local_target, make_setup
from tests.servers.mariadb import MyDatabase


@pytest.fixture
def vdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dbcrate-verify-test-"))
    path.chmod(0o755)
    yield path
    left = sorted(p.name for p in path.iterdir())
    shutil.rmtree(path)
    assert left == [], left


def test_mariadb_backup_verifies_and_a_damaged_dump_fails(tmp_path: Path, vdir: Path,
                                                         mariadb_db: MyDatabase) -> None:
    setup = make_setup(tmp_path, url=mariadb_db.url, password=mariadb_db.password,
                       engine="mysql", encryption="none", compression="none",
                       targets=[local_target(tmp_path / "backups")],
                       job_extra={"verify_dir": str(vdir)})
    with open(setup.config, "a", encoding="utf-8") as f:
        f.write('\n[[backup.jobs.checks]]\nname = "four customers"\n'
                'sql = "SELECT COUNT(*) FROM customers"\nequals = 4\n')
    setup.run("backup", "orders", check=True)
    proc = setup.run("verify", "orders", "--latest", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    for name in ("mysql_restore", "row_counts", "check_table", "four customers"):
        assert checks[name]["status"] == "pass", checks[name]
    counted = {t["table"]: t["expected"] for t in report["tables"]}
    real = {t: int(mariadb_db.sql(f"SELECT COUNT(*) FROM `{t}`")[0][0]) for t in counted}
    assert counted == real and counted["customers"] == 4 and counted["blobs"] == 3

    [data] = [p for p in (tmp_path / "backups").rglob("*") if p.is_file()
              and not p.name.endswith(".json") and "-stats" not in p.name]
    raw = data.read_bytes().replace(b"INSERT INTO `customers`", b"INSERT INTO `custmers`", 1)
    data.write_bytes(raw)
    [mpath] = list((tmp_path / "backups").rglob("*.manifest.json"))
    manifest = json.loads(mpath.read_text())
    digest = {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    manifest["plaintext"] = manifest["stored"] = digest
    mpath.write_text(json.dumps(manifest))
    proc = setup.run("verify", "orders", "--latest", "--json")
    assert proc.returncode == 20, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    assert report["failed_at"] == "restore", report


def test_a_server_older_than_the_backup_or_of_another_flavour_is_refused(
        tmp_path: Path, vdir: Path, mariadb_db: MyDatabase) -> None:
    setup = make_setup(tmp_path, url=mariadb_db.url, password=mariadb_db.password,
                       engine="mysql", encryption="none", compression="none",
                       targets=[local_target(tmp_path / "backups")],
                       job_extra={"verify_dir": str(vdir)})
    setup.run("backup", "orders", check=True)
    [mpath] = list((tmp_path / "backups").rglob("*.manifest.json"))
    manifest = json.loads(mpath.read_text())
    installed = mariadb_db.server.version
    for claimed, words in (("99.1.2-MariaDB", ["99.1.2-MariaDB", installed.split("-")[0],
                                               "99.1 or newer"]),
                           ("8.0.36", ["no MySQL server binary", "8.0.36"])):
        manifest["server_version"] = claimed
        mpath.write_text(json.dumps(manifest))
        proc = setup.run("verify", "orders", "--latest", "--json")
        assert proc.returncode == 10, proc.stdout + proc.stderr
        assert proc.stdout == "" and "Traceback" not in proc.stderr
        for w in words:
            assert w in proc.stderr, (w, proc.stderr)
    assert not list((tmp_path / "backups").rglob("*.verify.json"))  # nothing recorded
