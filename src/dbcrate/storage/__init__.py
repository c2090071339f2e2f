"""Storage targets: one Protocol, one module per implementation, a registry.

Keys are ``/``-separated paths relative to the target's root (a directory, or a
bucket plus prefix). Wrappers (retry, dry-run) are Storages around a Storage.
"""

from __future__ import annotations

import importlib

from dbcrate.config import TargetConfig
from dbcrate.storage.base import (
    AbortsIncomplete,
    Storage,
    StorageFactory,
    check_key,
    check_prefix,
    run_probe,
)

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


__all__ = [
    "REGISTRY",
    "AbortsIncomplete",
    "Storage",
    "StorageFactory",
    "check_key",
    "check_prefix",
    "open_target",
    "run_probe",
]
