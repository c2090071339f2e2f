"""For each target type: its server going away mid-upload gives exit 11, the other
target holds a complete, restorable backup, and the cut target lists nothing."""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest

from dbcrate.storage import open_target
from tests.lib.e2e import DBCRATE, local_target, make_setup
from tests.lib.proxy import through_proxy
from tests.servers.postgres import PgDatabase

MiB = 1 << 20


@pytest.fixture
def big_db(pg_db: PgDatabase) -> PgDatabase:
    """The sample plus ~25 MiB of poorly compressible rows: many chunks per upload."""
    with pg_db.server.connect(pg_db.name) as conn:
        conn.execute(
            "CREATE TABLE filler AS SELECT i, md5(i::text) || repeat(md5((i * 7)::text), 6) AS t"
            " FROM generate_series(1, 110000) AS i")
    return pg_db


@pytest.mark.parametrize("kind", ["s3", "sftp", "azure", "gcs"])
def test_server_gone_mid_upload_is_partial(
    kind: str, tmp_path: Path, big_db: PgDatabase, request: pytest.FixtureRequest
) -> None:
    cut, direct, proxy = through_proxy(kind, request)
    try:
        setup = make_setup(tmp_path, url=big_db.url, password=big_db.password,
                           targets=[local_target(tmp_path / "backups"), cut],
                           compression="none")
        proxy.cut_after(6 * MiB)  # after the preflight, well into the upload
        proc = setup.run("backup", "orders", "--json")
    finally:
        proxy.close()
    assert proc.returncode == 11, proc.stderr
    assert "Traceback" not in proc.stderr
    [job] = json.loads(proc.stdout)
    assert job["outcome"] == "partial" and job["targets"] == ["local"]
    results = {r["target"]: r for r in job["results"]}
    assert results[kind]["ok"] is False and results[kind]["step"] == "upload"
    assert f"target {kind}" in job["failures"][kind]
    assert proxy.cuts >= 1
    # the cut target holds nothing that lists; the local copy is complete and restores
    assert list(open_target(direct).list("orders/")) == []
    [b] = setup.list_json("orders", "--target", "local")
    dump = subprocess.run([DBCRATE, "--config", str(setup.config), "cat", "orders", "--latest",
                           "--target", "local", "--identity", str(setup.identity)],
                          capture_output=True, check=False, timeout=300)
    assert dump.returncode == 0, dump.stderr
    assert hashlib.sha256(dump.stdout).hexdigest() == b["plaintext_sha256"]
    assert b["size"] > 10 * MiB
