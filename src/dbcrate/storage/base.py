"""The storage Protocol and what every backend shares: key validation and the probe.

Keys are ``/``-separated paths relative to the target's root (a directory, or a bucket
plus prefix). Every implementation passes tests/contract/test_storage.py.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import timedelta
from typing import Protocol, runtime_checkable

from dbcrate.config import TargetConfig
from dbcrate.errors import StorageError
from dbcrate.model import ObjectInfo

#: names of a backend's own temp objects (never valid keys, never listed)
TMP_PREFIX = ".dbcrate-tmp-"
#: where ``run_probe`` writes its probe object
PROBE_PREFIX = ".dbcrate-probe/"


class Storage(Protocol):
    """Where backups live. Every implementation passes tests/contract/test_storage.py."""

    name: str

    def describe(self) -> str:
        """Where this target points, for messages (e.g. ``s3://bucket/prefix``). No secrets."""
        ...

    def put(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Store the stream under ``key``. Atomic: the object is invisible at ``key``
        until it is complete; an existing object is replaced.

        If ``chunks`` raises, nothing is left at ``key`` (and no temp file or open
        multipart upload is left behind) and the same exception propagates.
        Raises ``StorageError`` if the target fails.
        """
        ...

    def get(self, key: str, start: int | None = None, end: int | None = None) -> Iterator[bytes]:
        """Stream the object's bytes ``[start, end)`` (whole object by default).
        Raises ``ObjectNotFound`` (possibly only on first iteration) or ``StorageError``."""
        ...

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order. Never yields partial
        uploads or temp files. Raises ``StorageError``."""
        ...

    def delete(self, key: str) -> None:
        """Remove ``key``. Idempotent: a missing key is not an error. Raises ``StorageError``."""
        ...

    def probe(self) -> None:
        """Write, read, list and delete a small probe object. Raises ``StorageError``
        naming the step that failed."""
        ...




@runtime_checkable
class AbortsIncomplete(Protocol):
    """A Storage that can leave incomplete uploads behind when its process is killed
    (local temp files, S3 multipart uploads) and can find and remove them."""

    def leftovers(self, prefix: str, older_than: timedelta, *, remove: bool = False) -> int:
        """Count the incomplete uploads under ``prefix`` untouched for ``older_than``
        (never one of a live local process); with ``remove``, remove them (each removal
        is atomic). Returns how many. Raises ``StorageError``."""
        ...


StorageFactory = Callable[[TargetConfig], Storage]


def check_key(key: str) -> str:
    """Return ``key`` if it is a valid relative key; raise ``StorageError`` otherwise.

    Keys are non-empty, ``/``-separated, relative, and have no empty, ``.`` or ``..``
    segments (so they cannot escape the target's root) and no temp-file names.
    """
    if not isinstance(key, str) or not key:
        raise StorageError("invalid storage key: empty", hint="this is a bug; please report it")
    parts = key.split("/")
    if (
        key.startswith("/")
        or "\\" in key
        or "\0" in key
        or any(p in ("", ".", "..") for p in parts)
        or parts[-1].startswith(TMP_PREFIX)
    ):
        raise StorageError(
            f"invalid storage key {key!r}: keys are relative '/'-separated paths "
            "without empty, '.' or '..' segments",
            hint="this is a bug; please report it",
        )
    return key


def check_prefix(prefix: str) -> str:
    """Return ``prefix`` if it cannot escape the root (it may be empty or end in ``/``)."""
    if prefix:
        check_key(prefix.rstrip("/") or ".")
    return prefix


def run_probe(storage: Storage) -> None:
    """List, then write, read, list and delete a small object under ``.dbcrate-probe/``.

    Raises ``StorageError`` (of the same class as the underlying failure) whose message
    names the step that failed and ``storage.describe()``.
    """
    key = f"{PROBE_PREFIX}{uuid.uuid4().hex}"
    payload = b"dbcrate probe " + key.encode()
    step = "list"
    try:
        for _ in storage.list(PROBE_PREFIX):
            break
        step = "write"
        storage.put(key, [payload])
        step = "read"
        data = b"".join(storage.get(key))
        if data != payload:
            raise StorageError(f"read back {len(data)} bytes, expected {len(payload)}")
        step = "list after write"
        if key not in [o.key for o in storage.list(PROBE_PREFIX)]:
            raise StorageError("the probe object just written is not listed")
        step = "delete"
        storage.delete(key)
        if any(o.key == key for o in storage.list(PROBE_PREFIX)):
            raise StorageError("the probe object is still listed after delete")
    except StorageError as exc:
        message = f"probe of {storage.describe()} failed at step '{step}': {exc.message}"
        try:  # keep the class (e.g. transient, so a retry wrapper may try again)
            wrapped = type(exc)(message, exc.hint)
        except TypeError:
            wrapped = StorageError(message, exc.hint)
        raise wrapped from exc
