"""Test configuration. Real servers are started by the fixture modules in tests/servers/."""

from __future__ import annotations

pytest_plugins = [
    "tests.servers.postgres",
    "tests.servers.s3",
    "tests.servers.mariadb",
    "tests.servers.redis",
]
