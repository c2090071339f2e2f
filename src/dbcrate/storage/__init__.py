"""Storage targets: one Protocol, one module per implementation, a registry.

Keys are ``/``-separated paths relative to the target's root (a directory, or a
bucket plus prefix). Wrappers (retry, dry-run) are Storages around a Storage.
"""

from __future__ import annotations

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


def _registry() -> dict[str, StorageFactory]:
    from dbcrate.storage.local import LocalStorage
    from dbcrate.storage.s3 import S3Storage

    return {
        "local": LocalStorage.from_config,
        "s3": S3Storage.from_config,
    }


def storage_types() -> list[str]:
    """The target ``type`` values this build supports."""
    return sorted(_registry())


def open_target(target: TargetConfig) -> Storage:
    """Build the Storage a target config describes. Raises ``ConfigError``."""
    registry = _registry()
    try:
        factory = registry[target.type]
    except KeyError:
        known = ", ".join(sorted(registry))
        raise target.error(
            "type", f"unknown target type {target.type!r}; this build supports: {known}"
        ) from None
    return factory(target)
