"""The Storage contract: every implementation (and every wrapper) passes the same suite.

The subjects come from the harness registry in tests/contract/harnesses.py (a new backend
is one entry there). Real components only: a temporary directory, and moto's S3 server
over HTTP on loopback.
"""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbcrate.errors import ObjectNotFound, StorageError
from dbcrate.storage import Storage, open_target
from dbcrate.storage.local import LocalStorage
from tests.contract.harnesses import SUBJECTS, StorageHarness, Subject, open_subject, subject_id
from tests.servers.s3 import S3Server

MiB = 1 << 20
PART = 5 * MiB  # the part_size the s3 fixtures use


@pytest.fixture(params=SUBJECTS, ids=subject_id)
def subject(request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    case: tuple[StorageHarness, bool] = request.param
    return open_subject(request, tmp_path, case)


def chunked(data: bytes, size: int) -> Iterator[bytes]:
    for i in range(0, len(data), size):
        yield data[i : i + size]


def read(storage: Storage, key: str, start: int | None = None, end: int | None = None) -> bytes:
    return b"".join(storage.get(key, start, end))


@pytest.mark.parametrize("size", [0, 1, 1000, 3 * PART + 12345])
def test_round_trip(subject: Subject, size: int) -> None:
    data = os.urandom(size)
    info = subject.storage.put("job/2024/01/02/backup.bin", chunked(data, MiB + 17))
    assert (info.key, info.size) == ("job/2024/01/02/backup.bin", size)
    got = read(subject.storage, "job/2024/01/02/backup.bin")
    assert hashlib.sha256(got).hexdigest() == hashlib.sha256(data).hexdigest()
    [listed] = subject.storage.list("job/")
    assert (listed.key, listed.size) == ("job/2024/01/02/backup.bin", size)


def test_exact_part_boundary_and_odd_chunks(subject: Subject) -> None:
    data = os.urandom(2 * PART)
    subject.storage.put("k", chunked(data, 3 * MiB + 1))
    assert read(subject.storage, "k") == data


@pytest.mark.parametrize(
    ("start", "end"),
    [
        (None, None),
        (0, 10),
        (10, None),
        (None, 5),
        (990, 2000),
        (999, 1000),
        (5, 5),
        (1000, None),
        (2000, 3000),
    ],
)
def test_ranges(subject: Subject, start: int | None, end: int | None) -> None:
    data = bytes(range(250)) * 4
    subject.storage.put("r", [data])
    expected = data[(start or 0) : end]
    assert read(subject.storage, "r", start, end) == expected


def test_range_across_parts(subject: Subject) -> None:
    data = os.urandom(2 * PART + 100)
    subject.storage.put("big", chunked(data, MiB))
    lo, hi = PART - 10, PART + MiB + 3
    assert read(subject.storage, "big", lo, hi) == data[lo:hi]


def test_list_order_and_prefix(subject: Subject) -> None:
    keys = ["a/b/c", "a/b-c", "a/bc", "a/b/d/e", "b", "ab", "a/b0"]
    for i, k in enumerate(keys):
        subject.storage.put(k, [b"x" * i])
    assert [o.key for o in subject.storage.list()] == sorted(keys)
    assert [o.key for o in subject.storage.list("")] == sorted(keys)
    assert [o.key for o in subject.storage.list("a/b")] == sorted(
        k for k in keys if k.startswith("a/b")
    )
    assert [o.key for o in subject.storage.list("a/b/")] == ["a/b/c", "a/b/d/e"]
    assert [o.key for o in subject.storage.list("a/b/d/e")] == ["a/b/d/e"]
    assert list(subject.storage.list("zzz")) == []
    assert list(subject.storage.list("a/b/c/")) == []
    sizes = {o.key: o.size for o in subject.storage.list()}
    assert sizes == {k: i for i, k in enumerate(keys)}


def test_overwrite(subject: Subject) -> None:
    subject.storage.put("o", [b"first version"])
    subject.storage.put("o", [b"second"])
    assert read(subject.storage, "o") == b"second"
    assert [(o.key, o.size) for o in subject.storage.list()] == [("o", 6)]


def test_delete_is_idempotent(subject: Subject) -> None:
    subject.storage.delete("never/existed")
    subject.storage.put("d/x", [b"1"])
    subject.storage.put("d/y", [b"2"])
    subject.storage.delete("d/x")
    subject.storage.delete("d/x")
    assert [o.key for o in subject.storage.list()] == ["d/y"]
    with pytest.raises(ObjectNotFound):
        read(subject.storage, "d/x")


def test_get_missing(subject: Subject) -> None:
    with pytest.raises(ObjectNotFound, match="missing/key"):
        read(subject.storage, "missing/key")
    with pytest.raises(ObjectNotFound):
        read(subject.storage, "missing/key", 0, 0)


def test_key_below_an_object_is_missing(subject: Subject) -> None:
    subject.storage.put("f", [b"file"])
    with pytest.raises(ObjectNotFound):
        read(subject.storage, "f/x")
    subject.storage.delete("f/x")
    assert list(subject.storage.list("f/")) == []


def test_probe(subject: Subject) -> None:
    subject.storage.probe()
    assert list(subject.storage.list()) == []
    assert subject.leftovers() == []


@pytest.mark.parametrize("key", ["../escape", "a/../../b", "/abs", "a//b", "", "a/./b", "a/"])
def test_bad_keys_rejected(subject: Subject, key: str) -> None:
    with pytest.raises(StorageError):
        subject.storage.put(key, [b"x"])
    with pytest.raises(StorageError):
        read(subject.storage, key)


class Boom(Exception):
    pass


@pytest.mark.parametrize("before", [0, 100, 2 * PART + MiB])
def test_failed_put_leaves_nothing(subject: Subject, before: int) -> None:
    subject.storage.put("keep", [b"old"])
    err = Boom("source failed")

    def source() -> Iterator[bytes]:
        yield from chunked(os.urandom(before), MiB)
        raise err

    for key in ("new/obj", "keep"):
        with pytest.raises(Boom) as caught:
            subject.storage.put(key, source())
        assert caught.value is err
    with pytest.raises(ObjectNotFound):
        read(subject.storage, "new/obj")
    assert read(subject.storage, "keep") == b"old"
    assert [o.key for o in subject.storage.list()] == ["keep"]
    assert subject.leftovers() == []


def test_describe_has_no_secrets(subject: Subject) -> None:
    text = subject.storage.describe() + repr(subject.storage)
    assert subject.describes in subject.storage.describe()
    for secret in subject.secrets:
        assert secret not in text
    for name, value in os.environ.items():
        if any(w in name for w in ("SECRET", "PASSWORD", "TOKEN")) and len(value) >= 8:
            assert value not in text, name


def test_s3_memory_is_bounded(s3_server: S3Server, s3_target: object) -> None:
    from dbcrate.config import TargetConfig

    assert isinstance(s3_target, TargetConfig)
    storage = open_target(s3_target)
    block = os.urandom(MiB)
    total = 64 * MiB

    def source() -> Iterator[bytes]:
        for _ in range(total // MiB):
            yield block

    storage.put("warmup", [b"w"])  # import and connection costs outside the measurement
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        info = storage.put("big", source())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.size == total
    print(f"peak {peak / MiB:.1f} MiB")
    assert peak < 3 * PART, f"peak {peak / MiB:.1f} MiB"
    assert next(iter(storage.list("big"))).size == total


# -- local-only details --------------------------------------------------------------------


def test_local_modes_and_no_temp_files(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path / "root")
    storage.put("a/b/c.bin", [b"data"])
    f = tmp_path / "root" / "a" / "b" / "c.bin"
    assert f.stat().st_mode & 0o777 == 0o600
    assert (tmp_path / "root" / "a" / "b").stat().st_mode & 0o777 == 0o700
    (f.parent / ".dbcrate-tmp-leftover").write_bytes(b"partial")
    assert [o.key for o in storage.list()] == ["a/b/c.bin"]


def test_local_writeback_keeps_every_byte(tmp_path: Path) -> None:
    """Objects written back and dropped from the page cache as they are written (several
    WRITEBACK_STEPs, chunks not aligned to them) read back whole."""
    from dbcrate.storage.local import WRITEBACK_STEP

    storage = LocalStorage(tmp_path / "root")
    data = os.urandom(5 * WRITEBACK_STEP + 4097)
    info = storage.put("big", chunked(data, 3 * MiB - 5))
    assert info.size == len(data)
    assert read(storage, "big") == data


def test_local_os_errors_name_the_path(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_bytes(b"")
    storage = LocalStorage(blocker / "sub")
    with pytest.raises(StorageError) as caught:
        storage.put("x", [b"1"])
    assert str(blocker) in caught.value.message
    assert caught.value.hint
    with pytest.raises(StorageError, match="failed at step 'write'"):
        storage.probe()


def test_local_from_config_requires_path() -> None:
    from dbcrate.config import TargetConfig
    from dbcrate.errors import ConfigError

    with pytest.raises(ConfigError, match="path"):
        LocalStorage.from_config(TargetConfig(name="l", type="local", options={}))
