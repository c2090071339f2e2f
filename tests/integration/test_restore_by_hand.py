"""docs/restore-by-hand.md works: each documented pipeline, run with only the Debian
tools (age, zstd, gzip), the standalone AES script and pg_restore, restores the backup."""

from __future__ import annotations

import base64
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.lib.e2e import ROOT, local_target, make_setup
from tests.servers.postgres import PgDatabase, new_db_name

SCRIPT = ROOT / "scripts" / "dbcrate-aes-decrypt.py"
DECRYPT = {
    "age": "age -d -i {identity} {obj}",
    "aes-256-gcm": f"{sys.executable} {SCRIPT} {{key}} < {{obj}}",
    "none": "cat {obj}",
}
DECOMPRESS = {"zstd": " | zstd -d", "gzip": " | gzip -d", "none": ""}
MODES = [(c, e) for e in ("age", "aes-256-gcm", "none") for c in ("zstd", "gzip", "none")]


@pytest.mark.parametrize(("compression", "encryption"), MODES, ids=[f"{c}-{e}" for c, e in MODES])
def test_documented_pipeline_restores(
    tmp_path: Path, pg_db: PgDatabase, compression: str, encryption: str
) -> None:
    for tool in ("age", "zstd", "gzip"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} CLI not installed (make test installs it)")
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")],
                       compression=compression, encryption=encryption)
    setup.run("backup", check=True)
    [b] = setup.list_json("orders")
    obj = tmp_path / "backups" / b["key"]
    assert obj.name.endswith(".pgdump" + "".join(
        {"zstd": ".zst", "gzip": ".gz", "age": ".age", "aes-256-gcm": ".aes"}.get(s, "")
        for s in (compression, encryption)))
    keyfile = tmp_path / "key.b64"
    keyfile.write_text(base64.b64encode(setup.aes_key).decode())

    # step 2 of the doc: the stored digest matches sha256sum
    out = subprocess.run(["sha256sum", str(obj)], capture_output=True, text=True, check=True)
    assert out.stdout.split()[0] == b["sha256"]

    server = pg_db.server
    name = new_db_name("byhand")
    server.create_database(name)
    try:
        pipeline = DECRYPT[encryption].format(identity=setup.identity, obj=obj, key=keyfile)
        pipeline += DECOMPRESS[compression]
        pipeline += (f" | {server.bin_dir}/pg_restore --single-transaction --exit-on-error "
                     f"-h {server.host} -p {server.port} -U {server.user} -d {name}")
        env = {**os.environ, "PGPASSWORD": server.password}
        proc = subprocess.run(["bash", "-o", "pipefail", "-c", pipeline], env=env,
                              capture_output=True, text=True, check=False)
        assert proc.returncode == 0, proc.stderr
        assert PgDatabase(server, name).checksums() == pg_db.checksums()
    finally:
        server.drop_database(name)
