"""A real Azure Blob endpoint for tests: Azurite (npm ``azurite`` 3.37.0) on loopback.

``make test`` installs it into ``.cache/azurite`` (``make azurite``); ``$DBCRATE_AZURITE``
may point at another ``azurite-blob``. Fixtures:
- ``azurite_server`` (session): the running server (well-known dev account).
- ``azure_target`` (function): a fresh container and a ``TargetConfig`` for it.
"""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dbcrate.config import TargetConfig
from dbcrate.sandbox import free_port
from tests.lib.daemons import start_listening, stop

ACCOUNT = "devstoreaccount1"
#: Azurite's published development key (not a secret)
KEY = "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
_ids = itertools.count(1)


def azurite_binary() -> str | None:
    """The ``azurite-blob`` to run: $DBCRATE_AZURITE, the project's .cache, or PATH."""
    env = os.environ.get("DBCRATE_AZURITE")
    if env:
        return env
    local = Path(__file__).resolve().parents[2] / ".cache/azurite/node_modules/.bin/azurite-blob"
    if local.exists():
        return str(local)
    return shutil.which("azurite-blob")


@dataclass
class AzuriteServer:
    port: int
    location: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}/{ACCOUNT}"

    @property
    def connection_string(self) -> str:
        return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={KEY};"
                f"BlobEndpoint={self.endpoint};")

    def service(self) -> Any:
        from azure.storage.blob import BlobServiceClient

        return BlobServiceClient.from_connection_string(self.connection_string)

    def make_container(self) -> str:
        name = f"dbcrate-{next(_ids)}-{int(time.time() * 1000) % 10**8}"
        self.service().create_container(name)
        return name

    def target(self, container: str, /, **options: Any) -> TargetConfig:
        opts: dict[str, Any] = {"container": container, "prefix": "prod",
                                "endpoint": self.endpoint, "account_name": ACCOUNT,
                                "account_key": KEY, "block_size": 1}
        opts.update(options)
        return TargetConfig(name="azure", type="azure", options=opts)

    def start(self) -> None:
        binary = azurite_binary()
        assert binary is not None
        log = self.location / "azurite.log"
        self.process = start_listening(
            [binary, "--blobHost", "127.0.0.1", "--blobPort", str(self.port),
             "--location", str(self.location / "data"), "--disableTelemetry",
             "--skipApiVersionCheck", "--silent"],
            self.port, log, self.location, "azurite")

    def stop(self) -> None:
        stop(self.process)


@pytest.fixture(scope="session")
def azurite_server() -> Iterator[AzuriteServer]:
    if azurite_binary() is None:
        pytest.skip("azurite is not installed: run `make azurite` (npm install into .cache)")
    location = Path(tempfile.mkdtemp(prefix="dbcrate-azurite-"))
    server = AzuriteServer(free_port(), location)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(location, ignore_errors=True)


@pytest.fixture
def azure_target(azurite_server: AzuriteServer) -> TargetConfig:
    """A fresh container; options: container, prefix "prod", endpoint, account_name,
    account_key, block_size=1 (MiB)."""
    return azurite_server.target(azurite_server.make_container())


def sas(container: str, **perms: bool) -> str:
    """A container SAS token with ``perms`` (read, list, write, delete ...), valid an hour."""
    from azure.storage.blob import ContainerSasPermissions, generate_container_sas

    return generate_container_sas(ACCOUNT, container, account_key=KEY,
                                  permission=ContainerSasPermissions(**perms),
                                  expiry=datetime.now(UTC) + timedelta(hours=1))
