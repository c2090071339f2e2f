"""Contract, for every network target type: a put cut off by the server going away (a
TCP proxy in front of it stops) raises a StorageError and leaves nothing listed, and the
old object at that key survives."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from dbcrate.errors import StorageError
from dbcrate.storage import open_target
from tests.test_targets_killed import _through_proxy

MiB = 1 << 20


@pytest.mark.parametrize("kind", ["s3", "sftp", "azure", "gcs"])
def test_put_cut_off_leaves_nothing_listed(kind: str, request: pytest.FixtureRequest) -> None:
    cut, direct, proxy = _through_proxy(kind, request)
    try:
        storage = open_target(cut)
        storage.put("keep", [b"old"])
        storage.put("cut/obj", [b"old"])

        def source() -> Iterator[bytes]:
            for i in range(24):
                if i == 8:
                    proxy.cut()  # the server is gone from here on
                yield os.urandom(MiB)

        for key in ("new/obj", "cut/obj"):
            proxy.restore()
            with pytest.raises(StorageError):
                storage.put(key, source())
    finally:
        proxy.close()
    plain = open_target(direct)
    assert [o.key for o in plain.list()] == ["cut/obj", "keep"]
    assert b"".join(plain.get("cut/obj")) == b"old"
