"""A moto S3 server for the bench's restore-from-S3 row, behind a TCP proxy that counts
the bytes the server sends (what a restore fetches, HTTP headers included)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dbcrate.sandbox import free_port


@dataclass
class CountingProxy:
    """Forwards loopback connections to ``upstream``; ``fetched`` counts server bytes."""

    upstream: int
    port: int = 0
    fetched: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _server: socket.socket | None = None

    def start(self) -> None:
        self._server = socket.create_server(("127.0.0.1", 0))
        self.port = self._server.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def reset(self) -> None:
        with self._lock:
            self.fetched = 0

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.upstream))
            threading.Thread(target=self._pump, args=(client, upstream, False),
                             daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True),
                             daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, count: bool) -> None:
        try:
            while data := src.recv(1 << 16):
                if count:
                    with self._lock:
                        self.fetched += len(data)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


@contextlib.contextmanager
def moto_server(log: Path) -> Iterator[tuple[str, CountingProxy]]:
    """A moto server on loopback; yields its URL through a counting proxy."""
    port = free_port()
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                 "-p", str(port)], stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(
                        f"moto server did not start: {log.read_text()[-2000:]}") from None
                time.sleep(0.2)
        proxy = CountingProxy(port)
        proxy.start()
        yield f"http://127.0.0.1:{proxy.port}", proxy
    finally:
        proc.terminate()
        proc.wait(10)


def _client(url: str) -> Any:
    import boto3
    from botocore.config import Config

    return boto3.client("s3", endpoint_url=url, region_name="us-east-1",
                        aws_access_key_id="bench",
                        aws_secret_access_key="bench",  # noqa: S106 - moto, no auth
                        config=Config(s3={"addressing_style": "path"}))


def make_bucket(url: str, bucket: str) -> None:
    """Create ``bucket`` on the server at ``url`` (any credentials: no auth in moto)."""
    _client(url).create_bucket(Bucket=bucket)


def stored_size(url: str, bucket: str) -> int:
    """Bytes of every object in ``bucket``."""
    pages = _client(url).get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sum(o["Size"] for page in pages for o in page.get("Contents", []))
