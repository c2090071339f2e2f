"""A real S3 server for tests: moto's server mode in a subprocess on loopback.

Fixtures:
- ``s3_server`` (session): the running server, with IAM authentication enforced for an
  access key made at startup (so a wrong secret is really rejected).
- ``s3_target`` (function): a fresh bucket and a ``TargetConfig`` for it, prefix "prod".
- ``s3_proxy`` (function): a TCP proxy in front of the server that a test can cut and
  restore, to play "the S3 server went away mid-upload" while moto keeps its state.
"""

from __future__ import annotations

import contextlib
import itertools
import socket
import struct
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
import pytest
from botocore.config import Config

from dbcrate.config import TargetConfig
from dbcrate.sandbox import free_port
from tests.lib.daemons import stop

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

REGION = "us-east-1"
_bucket_ids = itertools.count(1)



@dataclass
class S3Server:
    """A running moto server. ``access_key``/``secret_key`` are valid IAM credentials."""

    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = REGION
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    def client(self, endpoint_url: str | None = None, **config: Any) -> S3Client:
        """A boto3 S3 client talking straight to the server (or to ``endpoint_url``)."""
        return boto3.client(
            "s3",
            endpoint_url=endpoint_url or self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, **config),
        )

    def make_bucket(self, stem: str = "dbcrate-test") -> str:
        """Create a new, empty bucket and return its name."""
        name = f"{stem}-{next(_bucket_ids)}-{int(time.time() * 1000) % 10**8}"
        self.client().create_bucket(Bucket=name)
        return name

    def target(self, bucket: str, /, **options: Any) -> TargetConfig:
        """A TargetConfig for ``bucket`` on this server (options override the defaults)."""
        opts: dict[str, Any] = {
            "endpoint": self.endpoint_url,
            "bucket": bucket,
            "region": self.region,
            "prefix": "prod",
            "access_key": self.access_key,
            "secret_key": self.secret_key,
            "part_size": 5,
            "connect_timeout": 2,
            "read_timeout": 20,
        }
        opts.update(options)
        return TargetConfig(name="s3", type="s3", options=opts)


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"moto server exited: {log.read_text()[-2000:]}")
        try:
            with urllib.request.urlopen(f"{url}/moto-api/", timeout=1):  # noqa: S310
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"moto server did not start: {log.read_text()[-2000:]}")


def _enable_auth(url: str) -> tuple[str, str]:
    """Make an IAM user allowed s3:* and turn on moto's request authentication."""
    iam = boto3.client(
        "iam",
        endpoint_url=url,
        region_name=REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName="dbcrate")
    iam.put_user_policy(
        UserName="dbcrate",
        PolicyName="s3-all",
        PolicyDocument='{"Version":"2012-10-17","Statement":'
        '[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}',
    )
    key = iam.create_access_key(UserName="dbcrate")["AccessKey"]
    req = urllib.request.Request(  # noqa: S310 - loopback http only
        f"{url}/moto-api/reset-auth",
        data=b"0",
        method="POST",
        headers={"Content-Type": "text/plain"},
    )
    with urllib.request.urlopen(req, timeout=5):  # noqa: S310
        pass
    return key["AccessKeyId"], key["SecretAccessKey"]


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[S3Server]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_ready(url, proc, log)
        access_key, secret_key = _enable_auth(url)
        yield S3Server(url, access_key, secret_key, REGION, proc)
    finally:
        stop(proc)


@pytest.fixture
def s3_target(s3_server: S3Server) -> TargetConfig:
    """A fresh bucket; target options: endpoint, bucket, region, prefix="prod",
    access_key, secret_key, part_size=5 (MiB), short timeouts."""
    return s3_server.target(s3_server.make_bucket())


class TcpProxy:
    """Forwards 127.0.0.1:<port> to an upstream port; ``cut()`` drops every connection
    and stops listening (connections are refused), ``restore()`` listens again on the
    same port. ``cut_after(n)`` cuts by itself once n request bytes have gone upstream."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.port = free_port()
        self.endpoint_url = f"http://127.0.0.1:{self.port}"
        self.cuts = 0
        self._lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._listener: socket.socket | None = None
        self._closed = False
        self._sent = 0
        self._limit: int | None = None
        self._restore_after: float | None = None
        self.restore()

    # -- control -------------------------------------------------------------------

    def cut(self) -> None:
        """Close all connections (with RST) and stop listening."""
        with self._lock:
            self.cuts += 1
            self._limit = None
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            listener.close()
        for c in conns:
            with contextlib.suppress(OSError):
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            # SHUT_RD first: a pump thread blocked in recv() holds the socket open, so a
            # bare close() would send nothing and a single-threaded server (the GCS
            # emulator) would wait for the rest of the request body forever
            with contextlib.suppress(OSError):
                c.shutdown(socket.SHUT_RD)
            with contextlib.suppress(OSError):
                c.close()

    def restore(self) -> None:
        """Listen again on the same port."""
        with self._lock:
            if self._listener is not None or self._closed:
                return
            ls = socket.socket()
            ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            ls.bind(("127.0.0.1", self.port))
            ls.listen(64)
            ls.settimeout(0.05)
            self._listener = ls
        threading.Thread(target=self._accept, args=(ls,), daemon=True).start()

    def cut_after(self, nbytes: int, restore_after: float | None = None) -> None:
        """Cut once ``nbytes`` more request bytes have been forwarded upstream; then, if
        ``restore_after`` is given, restore that many seconds later."""
        with self._lock:
            self._sent = 0
            self._limit = nbytes
            self._restore_after = restore_after

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self.cut()

    # -- forwarding ----------------------------------------------------------------

    def _accept(self, ls: socket.socket) -> None:
        while True:
            with self._lock:
                if self._listener is not ls:
                    return
            try:
                client, _ = ls.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            client.settimeout(None)
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            except OSError:
                client.close()
                continue
            with self._lock:
                if self._listener is not ls:
                    client.close()
                    upstream.close()
                    return
                self._conns.update((client, upstream))
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, outbound: bool) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
                if outbound and self._count(len(data)):
                    return
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def _count(self, n: int) -> bool:
        with self._lock:
            if self._limit is None:
                return False
            self._sent += n
            if self._sent < self._limit:
                return False
            delay = self._restore_after
        self.cut()
        if delay is not None:
            timer = threading.Timer(delay, self.restore)
            timer.daemon = True
            timer.start()
        return True


@pytest.fixture
def s3_proxy(s3_server: S3Server) -> Iterator[TcpProxy]:
    """A cuttable TCP proxy in front of ``s3_server``; use ``s3_proxy.endpoint_url``."""
    upstream = int(s3_server.endpoint_url.rsplit(":", 1)[1])
    proxy = TcpProxy(upstream)
    try:
        yield proxy
    finally:
        proxy.close()


def s3_state(server: S3Server, bucket: str) -> tuple[list[str], list[str]]:
    """(object keys, keys of open multipart uploads) in ``bucket``."""
    client = server.client()
    objects = [o["Key"] for o in client.list_objects_v2(Bucket=bucket).get("Contents", [])]
    uploads = [u["Key"] for u in client.list_multipart_uploads(Bucket=bucket).get("Uploads", [])]
    return objects, uploads
