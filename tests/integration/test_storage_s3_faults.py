"""S3 failure modes against a real moto server: a server that goes away mid-upload,
an unreachable endpoint, leftover multipart uploads, wrong credentials."""

from __future__ import annotations

import os
import threading
import time
import traceback
from collections.abc import Iterator
from datetime import timedelta

import pytest
from botocore.exceptions import ClientError

from dbcrate.config import TargetConfig
from dbcrate.errors import ConfigError, ObjectNotFound, StorageError, StorageUnavailable
from dbcrate.storage import open_target
from dbcrate.storage.retry import RetryingStorage
from dbcrate.storage.s3 import S3Storage
from tests.servers.s3 import S3Server, TcpProxy, free_port

MiB = 1 << 20


def s3(target: TargetConfig) -> S3Storage:
    storage = open_target(target)
    assert isinstance(storage, S3Storage)
    return storage


def open_uploads(server: S3Server, bucket: str) -> list[str]:
    resp = server.client().list_multipart_uploads(Bucket=bucket)
    return [u["Key"] for u in resp.get("Uploads", [])]


def exists(server: S3Server, bucket: str, key: str) -> bool:
    try:
        server.client().head_object(Bucket=bucket, Key=key)
    except ClientError:
        return False
    return True


def data(total: int) -> Iterator[bytes]:
    block = os.urandom(MiB)
    for _ in range(total // MiB):
        yield block


def test_server_stops_mid_upload(s3_server: S3Server, s3_proxy: TcpProxy) -> None:
    bucket = s3_server.make_bucket()
    storage = s3(s3_server.target(bucket, endpoint=s3_proxy.endpoint_url, max_attempts=1))
    # Part 1 (5 MiB) gets through; the connection dies during part 2; the server is back
    # a second later, in time for the abort (which retries for up to abort_timeout).
    s3_proxy.cut_after(7 * MiB, restore_after=1.0)
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        storage.put("job/db.dump", data(16 * MiB))
    elapsed = time.monotonic() - started
    assert s3_proxy.cuts == 1
    message = caught.value.message
    assert "upload part 2" in message
    assert f"s3://{bucket}/prod/job/db.dump" in message
    assert elapsed < 10
    assert open_uploads(s3_server, bucket) == []
    assert not exists(s3_server, bucket, "prod/job/db.dump")
    with pytest.raises(ObjectNotFound):
        b"".join(storage.get("job/db.dump"))


def test_retrying_storage_rides_out_a_short_outage(s3_server: S3Server, s3_proxy: TcpProxy) -> None:
    bucket = s3_server.make_bucket()
    target = s3_server.target(bucket, endpoint=s3_proxy.endpoint_url, max_attempts=1)
    storage = RetryingStorage(s3(target), attempts=6, base_delay=0.1)
    storage.put("a", [b"1"])
    s3_proxy.cut()
    threading.Timer(0.5, s3_proxy.restore).start()
    assert [o.key for o in storage.list()] == ["a"]
    assert b"".join(storage.get("a")) == b"1"


def test_unreachable_endpoint_fails_fast(s3_server: S3Server) -> None:
    target = s3_server.target(
        "no-bucket", endpoint=f"http://127.0.0.1:{free_port()}", max_attempts=1, connect_timeout=1
    )
    storage = s3(target)
    started = time.monotonic()
    for action in (
        lambda: storage.put("k", [b"x"]),
        lambda: list(storage.list()),
        lambda: b"".join(storage.get("k")),
        lambda: storage.delete("k"),
    ):
        with pytest.raises(StorageUnavailable) as caught:
            action()
        assert caught.value.message.startswith("cannot reach s3 endpoint http://127.0.0.1:")
        assert caught.value.message == caught.value.message.lower()
        assert "endpoint" in caught.value.hint
    with pytest.raises(StorageError, match="failed at step 'list': cannot reach s3 endpoint"):
        storage.probe()
    assert time.monotonic() - started < 5


def test_abort_incomplete(s3_server: S3Server, s3_target: TargetConfig) -> None:
    bucket = s3_target.options["bucket"]
    client = s3_server.client()
    for key in ("prod/job/left.dump", "elsewhere/left.dump"):
        up = client.create_multipart_upload(Bucket=bucket, Key=key)
        client.upload_part(
            Bucket=bucket, Key=key, UploadId=up["UploadId"], PartNumber=1, Body=b"x" * 100
        )
    storage = s3(s3_target)
    # moto reports every upload as initiated in 2010: anything younger is kept.
    assert storage.abort_incomplete("", older_than=timedelta(days=365 * 100)) == 0
    assert storage.abort_incomplete("job/", older_than=timedelta(0)) == 1
    assert open_uploads(s3_server, bucket) == ["elsewhere/left.dump"]
    assert storage.abort_incomplete("", older_than=timedelta(0)) == 0
    assert list(storage.list()) == []


def test_wrong_secret_key_is_rejected_without_leaking(s3_server: S3Server) -> None:
    bucket = s3_server.make_bucket()
    secret = "WrongSecret" + os.urandom(8).hex()
    storage = s3(s3_server.target(bucket, secret_key=secret, max_attempts=1))
    for action in (
        lambda: storage.put("k", [b"x"]),
        lambda: storage.put("k", data(6 * MiB)),
        lambda: list(storage.list()),
        lambda: b"".join(storage.get("k")),
        storage.probe,
    ):
        with pytest.raises(StorageError) as caught:
            action()
        err = caught.value
        assert "credentials" in err.message
        assert "secret_key" in err.hint
        shown = "".join(traceback.format_exception(err)) + err.hint + repr(storage)
        assert secret not in shown
    assert open_uploads(s3_server, bucket) == []


def test_missing_bucket_has_a_hint(s3_server: S3Server) -> None:
    storage = s3(s3_server.target("does-not-exist"))
    with pytest.raises(StorageError) as caught:
        storage.put("k", [b"x"])
    assert "bucket 'does-not-exist' does not exist" in caught.value.message
    assert "create the bucket" in caught.value.hint


@pytest.mark.parametrize(
    ("options", "key"),
    [
        ({"part_size": 4}, "part_size"),
        ({"secret_key": None}, "secret_key"),
        ({"checksums": "always"}, "checksums"),
        ({"bucket": ""}, "bucket"),
        ({"connect_timeout": "soon"}, "connect_timeout"),
    ],
)
def test_config_errors(s3_server: S3Server, options: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError, match=key):
        open_target(s3_server.target("b", **options))


def test_secrets_not_in_repr_or_describe(s3_server: S3Server) -> None:
    storage = s3(s3_server.target("b", endpoint="http://user:pw@127.0.0.1:9"))
    text = repr(storage) + storage.describe()
    assert s3_server.secret_key not in text
    assert s3_server.access_key not in text
    assert "pw" not in text
    assert storage.describe() == "s3://b/prod (http://127.0.0.1:9)"


@pytest.mark.parametrize("size", [10, 6 * MiB])
def test_options_storage_class_and_checksums(s3_server: S3Server, size: int) -> None:
    bucket = s3_server.make_bucket()
    target = s3_server.target(bucket, storage_class="STANDARD_IA", checksums="when_supported")
    storage = s3(target)
    storage.put("k", data(size) if size >= MiB else [b"x" * size])
    head = s3_server.client().head_object(Bucket=bucket, Key="prod/k")
    assert head["ContentLength"] == size
    assert head.get("StorageClass") == "STANDARD_IA"
    assert sum(len(c) for c in storage.get("k")) == size
