"""Manifest format 3 through the real CLI and a real PostgreSQL: a zstd backup records its
dump's size but no SHA-256 (``plaintext.sha256`` null) and restores; ``plaintext_sha256 =
true`` records it; a format-2 manifest still restores with its plaintext SHA-256 checked;
a null SHA-256 without zstd first is refused; the zstd frame checksum is what catches a
wrong decoded dump, in dbcrate and in ``zstd -d``."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.lib.e2e import DBCRATE, Setup, local_target, make_setup
from tests.servers.postgres import PgDatabase, new_db_name


def _setup(tmp: Path, db: PgDatabase, **kw: Any) -> Setup:
    return make_setup(tmp, url=db.url, password=db.password,
                      targets=[local_target(tmp / "backups")], **kw)


def _only(setup: Setup) -> tuple[Path, Path, dict[str, Any]]:
    """The data object, manifest path and manifest doc of the job's only backup."""
    [mpath] = (setup.dir / "backups").rglob("*.manifest.json")
    doc = json.loads(mpath.read_bytes())
    return setup.dir / "backups" / doc["data_key"], mpath, doc


def _write(mpath: Path, doc: dict[str, Any]) -> None:
    mpath.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _cat(setup: Setup) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([DBCRATE, "--config", str(setup.config), "cat", "orders", "--latest",
                           "--identity", str(setup.identity)], capture_output=True, check=False)


def _restore(setup: Setup, db: PgDatabase) -> tuple[subprocess.CompletedProcess[str], str]:
    name = new_db_name("restored")
    proc = setup.run("restore", "orders", "--latest", "--to", db.server.url(name),
                     "--identity", str(setup.identity))
    assert "Traceback" not in proc.stderr
    return proc, name


def _restores_equal(setup: Setup, db: PgDatabase) -> None:
    proc, name = _restore(setup, db)
    try:
        assert proc.returncode == 0, proc.stderr
        assert PgDatabase(db.server, name).checksums() == db.checksums()
    finally:
        db.server.drop_database(name)


def test_a_zstd_backup_records_no_plaintext_sha256_and_restores(
    tmp_path: Path, pg_db: PgDatabase
) -> None:
    setup = _setup(tmp_path, pg_db)  # zstd + age, the defaults
    proc = setup.run("backup", "--json", check=True)
    [done] = json.loads(proc.stdout)
    assert done["plaintext_sha256"] is None and done["format"] == 3
    _, _, doc = _only(setup)
    assert doc["format"] == 3 and doc["stages"] == ["zstd", "age"]
    assert doc["plaintext"]["sha256"] is None and doc["plaintext"]["size"] > 0
    assert all(len(p["plaintext"]["sha256"]) == 64 for p in doc["parts"])  # parts keep it
    [b] = setup.list_json("orders")
    assert b["plaintext_sha256"] is None and b["format"] == 3
    assert b["plaintext_size"] == doc["plaintext"]["size"]
    cat = _cat(setup)
    assert cat.returncode == 0 and len(cat.stdout) == b["plaintext_size"]
    _restores_equal(setup, pg_db)
    assert setup.run("list", "orders", check=True).returncode == 0  # the table prints too


@pytest.mark.parametrize("where", ["[backup]", "job"])
def test_plaintext_sha256_true_records_the_sha256_of_the_dump(
    tmp_path: Path, pg_db: PgDatabase, where: str
) -> None:
    if where == "job":
        setup = _setup(tmp_path, pg_db, job_extra={"plaintext_sha256": True})
    else:
        setup = _setup(tmp_path, pg_db)
        setup.config.write_text(setup.config.read_text().replace(
            "[backup]\n", "[backup]\nplaintext_sha256 = true\n", 1))
    setup.run("backup", check=True)
    [b] = setup.list_json("orders")
    cat = _cat(setup)
    assert cat.returncode == 0, cat.stderr
    assert b["plaintext_sha256"] == hashlib.sha256(cat.stdout).hexdigest()
    assert b["plaintext_size"] == len(cat.stdout) and b["format"] == 3


def test_gzip_and_uncompressed_backups_keep_their_plaintext_sha256(
    tmp_path: Path, pg_db: PgDatabase
) -> None:
    for compression in ("gzip", "none"):
        setup = _setup(tmp_path / compression, pg_db, compression=compression)
        setup.run("backup", check=True)
        [b] = setup.list_json("orders")
        cat = _cat(setup)
        assert b["plaintext_sha256"] == hashlib.sha256(cat.stdout).hexdigest(), compression


def test_a_format_2_manifest_restores_and_its_plaintext_sha256_is_checked(
    tmp_path: Path, pg_db: PgDatabase
) -> None:
    setup = _setup(tmp_path, pg_db)
    setup.run("backup", check=True)
    dump = _cat(setup).stdout
    _, mpath, doc = _only(setup)
    old = {**doc, "format": 2,
           "plaintext": {"size": len(dump), "sha256": hashlib.sha256(dump).hexdigest()}}
    _write(mpath, old)  # as the previous dbcrate wrote it
    [b] = setup.list_json("orders")
    assert b["format"] == 2 and b["plaintext_sha256"] == old["plaintext"]["sha256"]
    _restores_equal(setup, pg_db)

    sha = old["plaintext"]["sha256"]
    _write(mpath, {**old, "plaintext": {"size": len(dump),
                                        "sha256": sha[:10] + ("0" if sha[10] != "0" else "1")
                                        + sha[11:]}})
    proc, name = _restore(setup, pg_db)
    assert proc.returncode == 5 and "does not match" in proc.stderr, proc.stderr
    assert not pg_db.server.database_exists(name)
    cat = _cat(setup)
    assert cat.returncode == 5 and b"does not match" in cat.stderr

    _write(mpath, {**old, "plaintext": {"size": len(dump), "sha256": None}})
    proc = setup.run("cat", "orders", "--id", doc["id"], "--identity", str(setup.identity))
    assert proc.returncode == 5 and "plaintext.sha256 must be 64" in proc.stderr, proc.stderr
    assert proc.stdout == ""  # format 2 always records it: damaged


def test_a_null_plaintext_sha256_without_zstd_first_is_refused(
    tmp_path: Path, pg_db: PgDatabase
) -> None:
    setup = _setup(tmp_path, pg_db, compression="gzip")
    setup.run("backup", check=True)
    _, mpath, doc = _only(setup)
    assert doc["format"] == 3 and len(doc["plaintext"]["sha256"]) == 64
    doc["plaintext"]["sha256"] = None
    _write(mpath, doc)
    listed = setup.run("list", "orders", "--json", check=True)
    assert json.loads(listed.stdout) == [] and "not valid" in listed.stderr
    proc = setup.run("restore", "orders", "--id", doc["id"], "--to",
                     pg_db.server.url(new_db_name("restored")), "--identity",
                     str(setup.identity))
    assert proc.returncode == 5, proc.stderr
    assert "plaintext.sha256 is null, but the first stage is not zstd" in proc.stderr


def test_the_zstd_frame_checksum_stands_in_for_the_plaintext_sha256(
    tmp_path: Path, pg_db: PgDatabase
) -> None:
    """An unencrypted zstd backup whose frame checksum (the object's last 4 bytes) is off,
    with a manifest made to match the damaged object (an unauthenticated job cannot tell):
    dbcrate reports it corrupted (exit 5) and restores nothing; ``zstd -d`` fails too."""
    setup = _setup(tmp_path, pg_db, encryption="none")
    setup.run("backup", check=True)
    obj, mpath, doc = _only(setup)
    assert doc["stages"] == ["zstd"] and doc["plaintext"]["sha256"] is None
    data = bytearray(obj.read_bytes())
    data[-1] ^= 0x01
    obj.write_bytes(bytes(data))
    doc["stored"] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    _write(mpath, doc)
    proc, name = _restore(setup, pg_db)
    assert proc.returncode == 5 and "corrupted" in proc.stderr, proc.stderr
    assert not pg_db.server.database_exists(name)
    cat = _cat(setup)
    assert cat.returncode == 5 and b"corrupted" in cat.stderr
    if shutil.which("zstd") is not None:
        by_hand = subprocess.run(["zstd", "-d", "-c", str(obj)], capture_output=True,
                                 check=False)
        assert by_hand.returncode != 0 and b"checksum" in by_hand.stderr.lower()
