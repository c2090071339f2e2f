"""The storage backends the Storage contract (tests/contract/test_storage.py) runs against:
one ``StorageHarness`` per backend in ``STORAGE_HARNESSES``; each runs plain and wrapped in
``RetryingStorage``. Adding a backend (sftp, gcs, azure) is one entry: a name and a
function that opens a ``Subject`` on a real (loopback) server started by a fixture.

A ``Subject`` is the Storage under test plus a look behind it: ``leftovers()`` lists what
the backend holds beyond the listed objects (temp files, open multipart uploads);
``secrets`` are credentials that must never appear in ``describe()`` or ``repr``;
``describes`` is a text ``describe()`` must contain."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dbcrate.storage import Storage, open_target
from dbcrate.storage.local import LocalStorage
from dbcrate.storage.retry import RetryingStorage
from dbcrate.storage.s3 import S3Storage
from tests.servers.azurite import KEY as AZURITE_KEY
from tests.servers.s3 import S3Server
from tests.servers.sshd import SshServer


@dataclass
class Subject:
    """A Storage under test plus ways to look behind it."""

    storage: Storage
    kind: str
    leftovers: Callable[[], list[str]]
    describes: str
    secrets: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class StorageHarness:
    """One backend: ``open(request, tmp_path)`` returns a fresh, empty ``Subject``."""

    name: str
    open: Callable[[pytest.FixtureRequest, Path], Subject]


def _local(_request: pytest.FixtureRequest, tmp_path: Path) -> Subject:
    root = tmp_path / "store"
    storage = LocalStorage(root)

    def leftovers() -> list[str]:
        """Files in the root that are not listed objects (temp files)."""
        files = sorted(str(Path(d, f).relative_to(root)) for d, _, fs in os.walk(root)
                       for f in fs)
        listed = {o.key for o in storage.list()}
        return [f for f in files if f not in listed]

    return Subject(storage, "local", leftovers, describes=str(root))


def _s3(request: pytest.FixtureRequest, _tmp_path: Path) -> Subject:
    server: S3Server = request.getfixturevalue("s3_server")
    target = request.getfixturevalue("s3_target")
    storage = open_target(target)
    assert isinstance(storage, S3Storage)
    bucket = target.options["bucket"]

    def leftovers() -> list[str]:
        """Open multipart uploads."""
        resp = server.client().list_multipart_uploads(Bucket=bucket)
        return [u["Key"] for u in resp.get("Uploads", [])]

    return Subject(storage, "s3", leftovers, describes=f"s3://{bucket}/",
                   secrets=[server.secret_key, server.access_key])


def _sftp(request: pytest.FixtureRequest, _tmp_path: Path) -> Subject:
    sshd: SshServer = request.getfixturevalue("sshd_server")
    root = sshd.new_dir()
    storage = open_target(sshd.target(root))

    def leftovers() -> list[str]:
        """Temp files of uploads in the remote directory (read on the server's disk)."""
        return sorted(str(Path(d, f).relative_to(root)) for d, _, fs in os.walk(root)
                      for f in fs if f.startswith(".dbcrate-tmp-"))

    return Subject(storage, "sftp", leftovers, describes=f"{root}",
                   secrets=[sshd.client_key.read_text().strip().splitlines()[1]])


def _azure(request: pytest.FixtureRequest, _tmp_path: Path) -> Subject:
    target = request.getfixturevalue("azure_target")
    storage = open_target(target)

    def leftovers() -> list[str]:
        """Nothing is visible before a block list is committed; uncommitted blocks are
        the service's to collect (docs/config.md), so there is nothing to list."""
        return []

    return Subject(storage, "azure", leftovers, describes="azure://",
                   secrets=[AZURITE_KEY])


def _gcs(request: pytest.FixtureRequest, _tmp_path: Path) -> Subject:
    storage = open_target(request.getfixturevalue("gcs_target"))

    def leftovers() -> list[str]:
        """A resumable upload is invisible until its last chunk; a failed one is
        cancelled (tests/integration/test_storage_gcs.py shows the DELETE)."""
        return []

    return Subject(storage, "gcs", leftovers, describes="gs://")


#: every backend; each also runs wrapped in RetryingStorage ("retry-NAME")
STORAGE_HARNESSES = [
    StorageHarness("local", _local),
    StorageHarness("s3", _s3),
    StorageHarness("sftp", _sftp),
    StorageHarness("azure", _azure),
    StorageHarness("gcs", _gcs),
]

#: (harness, retry-wrapped?) for every subject the contract runs against
SUBJECTS = [(h, retry) for retry in (False, True) for h in STORAGE_HARNESSES]


def subject_id(case: tuple[StorageHarness, bool]) -> str:
    harness, retry = case
    return f"retry-{harness.name}" if retry else harness.name


def open_subject(request: pytest.FixtureRequest, tmp_path: Path,
                 case: tuple[StorageHarness, bool]) -> Subject:
    """A fresh Subject for ``case`` (wrapped in RetryingStorage when asked)."""
    harness, retry = case
    sub = harness.open(request, tmp_path)
    if retry:
        sub.storage = RetryingStorage(sub.storage, attempts=3, base_delay=0.01)
    return sub
