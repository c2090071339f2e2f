"""Contract, for every network target type: a put cut off by the server going away (a
TCP proxy in front of it stops) raises a StorageError and leaves nothing listed, and the
old object at that key survives."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterator

import pytest

from dbcrate.config import TargetConfig
from dbcrate.errors import StorageError
from dbcrate.storage import open_target
from tests.lib.proxy import through_proxy
from tests.servers.s3 import TcpProxy

MiB = 1 << 20


def _via(target: TargetConfig, old: TcpProxy, new: TcpProxy) -> TargetConfig:
    opts = dict(target.options)
    if target.type == "sftp":
        opts["port"] = new.port
    else:
        opts["endpoint"] = opts["endpoint"].replace(f":{old.port}", f":{new.port}")
    return dataclasses.replace(target, options=opts)


@pytest.mark.parametrize("kind", ["s3", "sftp", "azure", "gcs"])
def test_put_cut_off_leaves_nothing_listed(kind: str, request: pytest.FixtureRequest) -> None:
    first, direct, proxy = through_proxy(kind, request)
    plain = open_target(direct)
    plain.put("keep", [b"old"])
    plain.put("cut/obj", [b"old"])
    for key in ("new/obj", "cut/obj"):
        fresh = TcpProxy(proxy.upstream_port)  # one proxy per put: each is cut for good
        storage = open_target(_via(first, proxy, fresh))

        def source(p: TcpProxy = fresh) -> Iterator[bytes]:
            for i in range(24):
                if i == 8:
                    p.close()  # the server is gone from here on
                yield os.urandom(MiB)

        try:
            with pytest.raises(StorageError):
                storage.put(key, source())
        finally:
            fresh.close()
    proxy.close()
    assert [o.key for o in plain.list()] == ["cut/obj", "keep"]
    assert b"".join(plain.get("cut/obj")) == b"old"
