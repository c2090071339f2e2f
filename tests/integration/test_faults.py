"""Faults. Each ends with a non-zero exit, a clear message, no manifest, no object at a
final key, no open multipart upload, and an unchanged restore target."""

from __future__ import annotations

import base64
import dataclasses
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lib.e2e import Setup, local_target, make_setup
from tests.servers.postgres import PgDatabase, new_db_name
from tests.servers.s3 import S3Server, TcpProxy, s3_state

MiB = 1 << 20


@pytest.fixture
def big_db(pg_db: PgDatabase) -> PgDatabase:
    """The sample database plus ~25 MiB of poorly compressible rows, so a dump takes a
    while and spans several 5 MiB S3 parts."""
    with pg_db.server.connect(pg_db.name) as conn:
        conn.execute(
            "CREATE TABLE filler AS SELECT i, md5(i::text) || repeat(md5((i * 7)::text), 6) AS t"
            " FROM generate_series(1, 110000) AS i"
        )
    return pg_db


def test_s3_server_stopped_mid_upload(
    tmp_path: Path, big_db: PgDatabase, s3_server: S3Server, s3_proxy: TcpProxy
) -> None:
    bucket = s3_server.make_bucket()
    s3 = dataclasses.replace(
        s3_server.target(bucket, endpoint=s3_proxy.endpoint_url, part_size=5, max_attempts=1),
        name="s3",
    )
    setup = make_setup(tmp_path, url=big_db.url, password=big_db.password, targets=[s3],
                       compression="none")
    s3_proxy.cut_after(8 * MiB, restore_after=1.0)
    proc = setup.run("backup", "orders")
    assert proc.returncode == 4, proc.stderr
    assert "s3://" in proc.stderr and "upload part" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert s3_state(s3_server, bucket) == ([], [])


def test_one_failing_target_does_not_sink_the_other(
    tmp_path: Path, pg_db: PgDatabase, s3_server: S3Server
) -> None:
    """A dead S3 target makes the run partial (exit 11) but the local copy is complete."""
    bucket = s3_server.make_bucket()
    dead = dataclasses.replace(
        s3_server.target(bucket, endpoint="http://127.0.0.1:9", max_attempts=1), name="s3"
    )
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups"), dead])
    proc = setup.run("backup", "orders")
    assert proc.returncode == 11, proc.stderr
    assert "orders on target s3" in proc.stderr
    listed = setup.list_json("orders", "--target", "local")
    assert len(listed) == 1


# -- restore faults -------------------------------------------------------------------------


@pytest.fixture
def backed_up(tmp_path: Path, pg_db: PgDatabase) -> Iterator[tuple[Setup, PgDatabase, Path]]:
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")])
    setup.run("backup", check=True)
    [b] = setup.list_json("orders")
    yield setup, pg_db, tmp_path / "backups" / b["key"]


def _restore_into(setup: Setup, db: PgDatabase, name: str, *extra: str) -> tuple[int, str]:
    proc = setup.run("restore", "orders", "--latest", "--to", db.server.url(name), *extra)
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stderr


@pytest.mark.parametrize("target_state", ["absent", "empty"])
@pytest.mark.parametrize("fault", ["flipped byte", "truncated", "wrong identity", "no identity"])
def test_restore_faults_leave_target_unchanged(
    backed_up: tuple[Setup, PgDatabase, Path], tmp_path: Path, fault: str, target_state: str
) -> None:
    setup, db, obj = backed_up
    identity = setup.identity
    data = obj.read_bytes()
    if fault == "flipped byte":
        pos = len(data) // 2
        obj.write_bytes(data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1 :])
    elif fault == "truncated":
        obj.write_bytes(data[: len(data) - 1000])
    elif fault == "wrong identity":
        other = make_setup(tmp_path / "other", url=db.url, password=db.password, targets=[])
        identity = other.identity
    name = new_db_name("victim")
    if target_state == "empty":
        db.server.create_database(name)
    try:
        extra = [] if fault == "no identity" else ["--identity", str(identity)]
        code, err = _restore_into(setup, db, name, *extra)
        expected = {"flipped byte": (5, "does not match"), "truncated": (5, "truncated"),
                    "wrong identity": (6, "identit"), "no identity": (2, "--identity")}[fault]
        assert code == expected[0], err
        assert expected[1] in err, err
        if target_state == "absent":
            assert not db.server.database_exists(name)
        else:
            assert PgDatabase(db.server, name).checksums() == {"large_objects": "0:" + _EMPTY_MD5}
    finally:
        db.server.drop_database(name)


_EMPTY_MD5 = "d41d8cd98f00b204e9800998ecf8427e"


def test_wrong_aes_key_is_its_own_error(tmp_path: Path, pg_db: PgDatabase) -> None:
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")], encryption="aes-256-gcm")
    setup.run("backup", check=True)
    name = new_db_name("victim")
    code, err = _restore_into(setup, pg_db, name)
    assert code == 0, err  # sanity: the right key works
    pg_db.server.drop_database(name)
    (tmp_path / "aes.key").write_text(base64.b64encode(os.urandom(32)).decode())
    code, err = _restore_into(setup, pg_db, name)
    assert code == 6, err
    assert "key" in err
    assert not pg_db.server.database_exists(name)
