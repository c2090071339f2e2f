"""A target reached through a cuttable TCP proxy, for "server gone mid-upload" tests."""

from __future__ import annotations

import dataclasses

import pytest

from dbcrate.config import TargetConfig
from tests.servers.s3 import TcpProxy


def through_proxy(kind: str, request: pytest.FixtureRequest) -> tuple[TargetConfig,
                                                                      TargetConfig, TcpProxy]:
    """(target via a cuttable proxy, the same target direct, the proxy)."""
    if kind == "s3":
        server = request.getfixturevalue("s3_server")
        direct = server.target(server.make_bucket(), max_attempts=1, abort_timeout=1)
        port = int(server.endpoint_url.rsplit(":", 1)[1])
    elif kind == "sftp":
        server = request.getfixturevalue("sshd_server")
        direct = server.target(server.new_dir(), known_hosts_file="/nonexistent",
                               host_key_fingerprint=server.fingerprint, max_attempts=1)
        port = server.port
    elif kind == "azure":
        server = request.getfixturevalue("azurite_server")
        direct = server.target(server.make_container(), max_attempts=1)
        port = server.port
    else:
        server = request.getfixturevalue("gcs_server")
        direct = server.target(server.make_bucket(), max_attempts=1)
        port = server.port
    proxy = TcpProxy(port)
    opts = dict(direct.options)
    if kind == "sftp":
        opts["port"] = proxy.port
    else:
        opts["endpoint"] = opts["endpoint"].replace(f":{port}", f":{proxy.port}")
    return dataclasses.replace(direct, name=kind, options=opts), direct, proxy
