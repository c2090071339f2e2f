"""One dump, an outcome per target: preflight, exit 11, --json results, list TARGETS,
restore falling back to the next copy. Real PostgreSQL, sshd and moto servers."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from dbcrate.config import TargetConfig
from tests.lib.e2e import Setup, local_target, make_setup
from tests.servers.postgres import PgDatabase, new_db_name
from tests.servers.s3 import S3Server
from tests.servers.sshd import SshServer


def _sftp(sshd: SshServer, **options: Any) -> TargetConfig:
    return dataclasses.replace(sshd.target(sshd.new_dir(), **options), name="sftp")


def _dead_s3(s3_server: S3Server) -> TargetConfig:
    bucket = s3_server.make_bucket()
    return dataclasses.replace(
        s3_server.target(bucket, endpoint="http://127.0.0.1:9", max_attempts=1), name="s3")


def _json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(proc.stdout)


def _files(root: Path) -> list[str]:
    return sorted(str(Path(d, f).relative_to(root)) for d, _, fs in os.walk(root) for f in fs)


def test_dead_target_gives_partial_exit_and_json(
    tmp_path: Path, pg_db: PgDatabase, s3_server: S3Server, sshd_server: SshServer
) -> None:
    sftp = _sftp(sshd_server)
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups"), _dead_s3(s3_server), sftp])
    proc = setup.run("backup", "orders", "--json")
    assert proc.returncode == 11, proc.stderr
    assert "Traceback" not in proc.stderr
    [job] = _json(proc)
    assert job["ok"] is False and job["outcome"] == "partial"
    assert job["targets"] == ["local", "sftp"]
    assert set(job["failures"]) == {"s3"} and "target s3" in job["failures"]["s3"]
    results = {r["target"]: r for r in job["results"]}
    assert [r["target"] for r in job["results"]] == ["local", "s3", "sftp"]
    assert results["s3"]["ok"] is False and results["s3"]["step"] == "preflight"
    assert "127.0.0.1:9" in results["s3"]["error"]
    for name in ("local", "sftp"):
        assert results[name]["ok"] is True and results[name]["step"] == "done"
        assert results[name]["error"] is None and results[name]["seconds"] >= 0

    # list: one row per backup, its copies in job order; a dead target makes it partial
    listed = setup.run("list", "orders", "--json")
    assert listed.returncode == 11, listed.stderr
    [b] = _json(listed)
    assert b["targets"] == ["local", "sftp"] and b["target"] == "local"
    table = setup.run("list", "orders")
    assert "TARGETS" in table.stdout and "local,sftp" in table.stdout
    pruned = setup.run("prune", "orders", "--dry-run")
    assert pruned.returncode == 11, pruned.stderr


def test_no_target_passes_preflight_nothing_dumped(
    tmp_path: Path, pg_db: PgDatabase, s3_server: S3Server, sshd_server: SshServer
) -> None:
    wrong = tmp_path / "known_hosts"
    wrong.write_text("")
    sftp = _sftp(sshd_server, known_hosts_file=str(wrong))
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[_dead_s3(s3_server), sftp])
    proc = setup.run("backup", "orders", "--json")
    assert proc.returncode == 4, proc.stderr
    [job] = _json(proc)
    assert job["outcome"] == "failed" and job["targets"] == []
    assert {r["step"] for r in job["results"]} == {"preflight"}
    assert sshd_server.fingerprint in job["failures"]["sftp"]
    assert _files(Path(sftp.options["path"])) == []


@pytest.fixture
def two_copies(tmp_path: Path, pg_db: PgDatabase,
               sshd_server: SshServer) -> tuple[Setup, Path, Path, str]:
    sftp = _sftp(sshd_server)
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups"), sftp])
    setup.run("backup", "orders", check=True)
    [b] = setup.list_json("orders")
    assert b["targets"] == ["local", "sftp"]
    return setup, tmp_path / "backups" / b["key"], Path(sftp.options["path"]) / b["key"], b["id"]


def _restore(setup: Setup, db: PgDatabase, *extra: str) -> tuple[subprocess.CompletedProcess[str],
                                                                 str]:
    name = new_db_name("restored")
    proc = setup.run("restore", "orders", *extra, "--to", db.server.url(name),
                     "--identity", str(setup.identity), "--json")
    return proc, name


def test_id_of_backup_on_two_targets_restores(two_copies: tuple[Setup, Path, Path, str],
                                              pg_db: PgDatabase) -> None:
    setup, _, _, backup_id = two_copies
    proc, name = _restore(setup, pg_db, "--id", backup_id)
    try:
        assert proc.returncode == 0, proc.stderr
        out = _json(proc)
        assert (out["id"], out["target"], out["skipped"]) == (backup_id, "local", [])
        assert PgDatabase(pg_db.server, name).checksums() == pg_db.checksums()
    finally:
        pg_db.server.drop_database(name)


@pytest.mark.parametrize("damage", ["corrupt", "missing"])
def test_restore_falls_back_to_the_next_copy(
    two_copies: tuple[Setup, Path, Path, str], pg_db: PgDatabase, damage: str
) -> None:
    setup, local_obj, _, backup_id = two_copies
    if damage == "corrupt":
        data = bytearray(local_obj.read_bytes())
        data[len(data) // 2] ^= 0x01
        local_obj.write_bytes(bytes(data))
    else:
        local_obj.unlink()
    proc, name = _restore(setup, pg_db, "--latest")
    try:
        assert proc.returncode == 0, proc.stderr
        out = _json(proc)
        assert out["id"] == backup_id and out["target"] == "sftp"
        [skip] = out["skipped"]
        assert skip["target"] == "local"
        reason = "sha256" if damage == "corrupt" else "no object"
        assert reason in skip["error"].lower()
        assert "local" in proc.stderr and "skipped" in proc.stderr
        assert PgDatabase(pg_db.server, name).checksums() == pg_db.checksums()
    finally:
        pg_db.server.drop_database(name)
    # --target reads only that copy: the damaged one fails, nothing else is tried
    only, _ = _restore(setup, pg_db, "--latest", "--target", "local")
    assert only.returncode == (5 if damage == "corrupt" else 4), only.stderr
    assert "Traceback" not in only.stderr


def test_every_copy_damaged_names_each_target(
    two_copies: tuple[Setup, Path, Path, str], pg_db: PgDatabase
) -> None:
    setup, local_obj, sftp_obj, _ = two_copies
    for obj in (local_obj, sftp_obj):
        data = bytearray(obj.read_bytes())
        data[-1] ^= 0x01
        obj.write_bytes(bytes(data))
    proc, _ = _restore(setup, pg_db, "--latest")
    assert proc.returncode == 5, proc.stderr
    assert "target local" in proc.stderr and "target sftp" in proc.stderr


def test_restore_skips_an_unreachable_target(
    tmp_path: Path, pg_db: PgDatabase, s3_server: S3Server
) -> None:
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[_dead_s3(s3_server), local_target(tmp_path / "backups")])
    assert setup.run("backup", "orders").returncode == 11
    proc, name = _restore(setup, pg_db, "--latest")
    try:
        assert proc.returncode == 0, proc.stderr
        out = _json(proc)
        assert out["target"] == "local"
        assert [s["target"] for s in out["skipped"]] == ["s3"]
        assert "s3" in proc.stderr and "skipped" in proc.stderr
        assert PgDatabase(pg_db.server, name).checksums() == pg_db.checksums()
    finally:
        pg_db.server.drop_database(name)


def test_select_counts_a_backup_on_two_targets_once() -> None:
    """Pure unit of the catalog: the same manifest read from two targets is one backup."""
    from datetime import UTC, datetime

    from dbcrate import catalog
    from dbcrate.model import Digest, Manifest

    t = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    d = Digest(size=1, sha256="0" * 64)
    m = Manifest(format=catalog.FORMAT, id=catalog.new_id(t), job="orders", engine="postgres",
                 server_version="17", tool="pg_dump", tool_version="17", stages=(),
                 started_at=t, finished_at=t, plaintext=d, stored=d, encryption="none",
                 recipients=(), key_id=None, dbcrate_version="0", status="complete",
                 data_key="orders/x")
    assert catalog.select([m, m], "orders", backup_id=m.id) == m
    assert catalog.select([m, m], "orders", backup_id=m.id[:8]) == m
