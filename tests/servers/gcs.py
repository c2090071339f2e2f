"""A GCS endpoint for tests: PyPI ``gcp-storage-emulator`` 2026.7.19 on loopback.

Not fake-gcs-server: v1.54 finalizes a resumable upload on a status query. The emulator
checks no credentials (the 401/403 mapping is unit-tested) and answers a cancel with 501.
Fixtures: ``gcs_server`` (session) and ``gcs_target`` (function: a fresh bucket).
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dbcrate.config import TargetConfig
from dbcrate.sandbox import free_port
from tests.lib.daemons import start_listening, stop

_ids = itertools.count(1)


@dataclass
class GcsServer:
    port: int
    workdir: Path
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self) -> Any:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud import storage

        return storage.Client(project="test", credentials=AnonymousCredentials(),
                              client_options={"api_endpoint": self.endpoint})

    def make_bucket(self) -> str:
        name = f"dbcrate-{next(_ids)}-{int(time.time() * 1000) % 10**8}"
        self.client().create_bucket(name)
        return name

    def target(self, bucket: str, /, **options: Any) -> TargetConfig:
        opts: dict[str, Any] = {"bucket": bucket, "prefix": "prod", "endpoint": self.endpoint,
                                "chunk_size": 1}
        opts.update(options)
        return TargetConfig(name="gcs", type="gcs", options=opts)

    def start(self) -> None:
        exe = Path(sys.executable).with_name("gcp-storage-emulator")
        if not exe.exists():
            pytest.skip("gcp-storage-emulator is not installed (the test extra)")
        log = self.workdir / "gcs.log"
        self.process = start_listening(
            [str(exe), "start", "-H", "127.0.0.1", "--port", str(self.port)],
            self.port, log, self.workdir, "gcp-storage-emulator")

    def stop(self) -> None:
        stop(self.process)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GcsServer]:
    workdir = Path(tempfile.mkdtemp(prefix="dbcrate-gcs-"))
    server = GcsServer(free_port(), workdir)
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def gcs_target(gcs_server: GcsServer) -> TargetConfig:
    """A fresh bucket; options: bucket, prefix "prod", endpoint (anonymous), chunk_size=1."""
    return gcs_server.target(gcs_server.make_bucket())
