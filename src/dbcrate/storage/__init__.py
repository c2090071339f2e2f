"""Storage targets: one Protocol, one module per implementation, a registry.

Keys are ``/``-separated paths relative to the target's root (a directory, or a
bucket plus prefix). Wrappers (retry, dry-run) are Storages around a Storage.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable, Iterator
from typing import Protocol

from dbcrate.config import TargetConfig
from dbcrate.model import ObjectInfo


class Storage(Protocol):
    """Where backups live. Every implementation passes tests/test_storage_contract.py."""

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


StorageFactory = Callable[[TargetConfig], Storage]


#: target type -> "module:factory"; imported on first use so an unused backend's SDK
#: (boto3 ...) costs nothing at start-up
REGISTRY: dict[str, str] = {
    "local": "dbcrate.storage.local:LocalStorage.from_config",
    "s3": "dbcrate.storage.s3:S3Storage.from_config",
    "sftp": "dbcrate.storage.sftp:SftpStorage.from_config",
    "azure": "dbcrate.storage.azure:AzureStorage.from_config",
    "gcs": "dbcrate.storage.gcs:GcsStorage.from_config",
}


def _load(spec: str) -> StorageFactory:
    module, _, attr = spec.partition(":")
    obj: object = importlib.import_module(module)
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj  # type: ignore[return-value]


def storage_types() -> list[str]:
    """The target ``type`` values this build supports."""
    return sorted(REGISTRY)


def open_target(target: TargetConfig) -> Storage:
    """Build the Storage a target config describes. Raises ``ConfigError``."""
    try:
        spec = REGISTRY[target.type]
    except KeyError:
        known = ", ".join(sorted(REGISTRY))
        raise target.error(
            "type", f"unknown target type {target.type!r}; this build supports: {known}"
        ) from None
    return _load(spec)(target)
