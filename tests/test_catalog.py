"""Catalog: keys, UUIDv7 ids, manifest round trip and selection (pure unit tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dbcrate import catalog
from dbcrate.errors import BackupNotFound, ManifestError, UsageError
from dbcrate.model import Digest, Manifest

T0 = datetime(2026, 11, 21, 3, 0, 0, tzinfo=UTC)


def manifest(i: int, job: str = "orders", status: str = "complete") -> Manifest:
    started = T0 + timedelta(days=i)
    bid = catalog.new_id(started)
    return Manifest(
        format=catalog.FORMAT, id=bid, job=job, engine="postgres", server_version="17.11",
        tool="pg_dump", tool_version="17.11", stages=("zstd", "age"), started_at=started,
        finished_at=started + timedelta(minutes=5), plaintext=Digest(10, "a" * 64),
        stored=Digest(5, "b" * 64), encryption="age", recipients=("abcd" * 4,),
        dbcrate_version="0.1.0", status=status,
        data_key=catalog.data_key(job, started, bid, ("pgdump", "zst", "age")),
    )


def test_uuid7_is_time_ordered_and_valid() -> None:
    ids = [catalog.new_id(T0 + timedelta(milliseconds=i)) for i in range(50)]
    assert ids == sorted(ids)
    u = uuid.UUID(ids[0])
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert len({catalog.new_id(T0) for _ in range(100)}) == 100


def test_key_layout() -> None:
    key = catalog.data_key("orders", T0, "0190-x", ("pgdump", "zst", "", "age"))
    assert key == "orders/2026/11/21/20261121T030000Z-0190-x.pgdump.zst.age"
    assert catalog.manifest_key(key) == key + ".manifest.json"


def test_manifest_round_trip_and_no_surprises() -> None:
    m = manifest(0)
    body = catalog.encode(m)
    assert catalog.decode(body, where="k") == m
    assert b'"started_at": "2026-11-21T03:00:00Z"' in body


def test_manifest_errors() -> None:
    with pytest.raises(ManifestError, match="format 99"):
        catalog.decode(b'{"format": 99}', where="k")
    with pytest.raises(ManifestError, match="not valid"):
        catalog.decode(b"[1, 2", where="k")
    with pytest.raises(ManifestError, match="not valid"):
        catalog.decode(b'{"format": 1, "id": "x"}', where="k")


def test_select() -> None:
    ms = [manifest(i) for i in range(5)] + [manifest(9, job="other"), manifest(10, status="x")]
    assert catalog.select(ms, "orders", latest=True) == ms[4]
    assert catalog.select(ms, "orders", at=T0 + timedelta(days=2, hours=1)) == ms[2]
    assert catalog.select(ms, "orders", at=T0 + timedelta(days=2)) == ms[2]
    assert catalog.select(ms, "orders", backup_id=ms[1].id) == ms[1]
    with pytest.raises(BackupNotFound, match="oldest"):
        catalog.select(ms, "orders", at=T0 - timedelta(seconds=1))
    with pytest.raises(BackupNotFound):
        catalog.select(ms, "nobody", latest=True)
    with pytest.raises(BackupNotFound):
        catalog.select(ms, "orders", backup_id="ffffffff-0000")
    with pytest.raises(UsageError):
        catalog.select(ms, "orders", latest=True, backup_id="x")
