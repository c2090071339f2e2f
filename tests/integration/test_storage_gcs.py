"""GCS target details: error mapping (the emulator checks no credentials, so 401/403 are
unit-tested on the translation), missing bucket and cancelled uploads on the emulator."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from google.api_core import exceptions as gexc

from dbcrate.config import TargetConfig
from dbcrate.errors import ConfigError, ObjectNotFound, StorageError, StorageUnavailable
from dbcrate.storage import open_target
from dbcrate.storage.gcs import translate
from tests.servers.gcs import GcsServer

MiB = 1 << 20


def test_translate_401_403_404_503() -> None:
    args = ("target g", "gb", "o/k", "service account of /k.json")
    e401 = translate(gexc.Unauthorized("no"), "list", *args)
    assert "service account of /k.json was refused" in e401.message
    e403 = translate(gexc.Forbidden("no"), "write", *args)
    assert "storage.objects.create" in (e403.hint or "") and "gb" in (e403.hint or "")
    assert "storage.objects.list" in (translate(gexc.Forbidden("x"), "list", *args).hint or "")
    assert isinstance(translate(gexc.NotFound("No such object"), "read", *args), ObjectNotFound)
    missing = translate(gexc.NotFound("x"), "list", *args)
    assert "bucket 'gb' does not exist" in missing.message
    assert isinstance(translate(gexc.ServiceUnavailable("x"), "read", *args), StorageUnavailable)


def test_missing_bucket_is_named(gcs_server: GcsServer) -> None:
    storage = open_target(gcs_server.target("no-such-bucket"))
    with pytest.raises(StorageError) as caught:
        storage.probe()
    assert "no-such-bucket" in caught.value.message
    assert "no-such-bucket" not in [b.name for b in gcs_server.client().list_buckets()]


def test_failed_upload_after_chunks_is_cancelled(gcs_target: TargetConfig,
                                                 gcs_server: GcsServer) -> None:
    storage = open_target(gcs_target)

    def source() -> Iterator[bytes]:
        yield os.urandom(3 * MiB)  # chunk_size 1 MiB: the session is open, chunks sent
        raise RuntimeError("dump died")

    with pytest.raises(RuntimeError, match="dump died"):
        storage.put("obj", source())
    assert list(storage.list()) == []
    bucket = gcs_target.options["bucket"]
    assert [b.name for b in gcs_server.client().list_blobs(bucket)] == []
    # the session was cancelled (DELETE of the session URL; the emulator answers 501)
    log = (gcs_server.workdir / "gcs.log").read_text()
    assert any(line.startswith('"DELETE /upload/') and bucket in line
               for line in log.splitlines()), log[-2000:]


def test_object_appears_with_the_last_chunk(gcs_target: TargetConfig) -> None:
    storage = open_target(gcs_target)
    seen: list[list[str]] = []

    def source() -> Iterator[bytes]:
        for i in range(3):
            yield os.urandom(MiB)  # chunk_size 1 MiB: chunks are sent meanwhile
            if i == 2:
                seen.append([o.key for o in storage.list()])

    storage.put("obj", source())
    assert seen == [[]]
    assert [(o.key, o.size) for o in storage.list()] == [("obj", 3 * MiB)]


def test_dead_endpoint_is_unavailable() -> None:
    storage = open_target(TargetConfig("g", "gcs", {"bucket": "b", "max_attempts": 1,
                                                    "endpoint": "http://127.0.0.1:9"}))
    with pytest.raises(StorageUnavailable, match="target g"):
        list(storage.list())


def test_config_errors(tmp_path: object) -> None:
    with pytest.raises(ConfigError, match="credentials_file"):
        open_target(TargetConfig("g", "gcs", {"bucket": "b", "credentials_file": "/nope.json"}))
    with pytest.raises(ConfigError, match="chunk_size"):
        open_target(TargetConfig("g", "gcs", {"bucket": "b", "endpoint": "http://x",
                                              "chunk_size": 0}))
