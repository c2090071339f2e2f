"""``dbcrate verify`` of Redis backups with Debian's redis-server and redis-check-rdb:
a good backup passes with every key counted; an RDB damaged before it was stored (its
digests rewritten to match, as a buggy or malicious source would produce) fails at
redis-check-rdb. Nothing is left in verify_dir."""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lib.e2e import local_target, make_setup
from tests.servers.redis import RedisServer, load_sample


@pytest.fixture
def vdir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dbcrate-verify-test-"))
    yield path
    left = sorted(p.name for p in path.iterdir())
    shutil.rmtree(path)
    assert left == [], left


def test_redis_backup_verifies_and_a_damaged_rdb_fails(tmp_path: Path, vdir: Path,
                                                        redis_server: RedisServer) -> None:
    load_sample(redis_server)
    setup = make_setup(tmp_path, url=redis_server.url, password=redis_server.password,
                       engine="redis", encryption="none", compression="none",
                       targets=[local_target(tmp_path / "backups")],
                       job_extra={"verify_dir": str(vdir)})
    setup.run("backup", "orders", check=True)
    proc = setup.run("verify", "orders", "--latest", "--json")
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    checks = {c["kind"]: c for c in report["checks"]}
    assert checks["redis_check_rdb"]["status"] == "pass"
    assert checks["key_counts"]["status"] == "pass", checks["key_counts"]
    total = 0
    for db in (0, 3):
        with redis_server.client(db) as c:
            total += int(c.call("DBSIZE"))
    assert checks["key_counts"]["detail"].startswith(f"{total} keys loaded, {total} in the RDB")
    with redis_server.client(3) as c:
        in_db3 = int(c.call("DBSIZE"))
    assert "RESIZEDB per database" in checks["key_counts"]["detail"]  # streams walked too
    assert f"db0={total - in_db3}, db3={in_db3}" in checks["key_counts"]["detail"]
    assert report["server"] and report["record"] and report["keys"] == total

    with redis_server.client(0) as c:  # most keys gone before the next backup
        c.call("FLUSHDB")
    setup.run("backup", "orders", check=True)
    proc = setup.run("verify", "orders", "--latest", "--json")
    assert proc.returncode == 21, proc.stdout + proc.stderr
    drop = {c["kind"]: c for c in json.loads(proc.stdout)["checks"]}["row_drop"]
    assert drop["status"] == "alarm" and f"keys: {total} -> " in drop["detail"], drop

    [data] = sorted((tmp_path / "backups").rglob("*.rdb"))[-1:]
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))
    [mpath] = sorted((tmp_path / "backups").rglob("*.rdb.manifest.json"))[-1:]
    manifest = json.loads(mpath.read_text())
    digest = {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest()}
    manifest["plaintext"] = manifest["stored"] = digest
    mpath.write_text(json.dumps(manifest))
    proc = setup.run("verify", "orders", "--latest", "--json")
    assert proc.returncode == 20, proc.stderr
    report = json.loads(proc.stdout)
    assert report["failed_at"] == "checks" and "redis-check-rdb" in report["reason"]
