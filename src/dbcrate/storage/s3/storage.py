"""S3 and S3-compatible object storage (AWS, MinIO, Ceph, Backblaze, Wasabi, R2, ...).

Keys are relative to ``bucket/prefix``. Uploads stream with one part in memory (see
``s3.upload``); nothing is written to local disk. Credentials live only inside the
boto3 client: they never appear in ``repr``, messages or logs.
"""

from __future__ import annotations

import builtins
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, cast
from urllib.parse import urlsplit, urlunsplit

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from dbcrate.config import TargetConfig
from dbcrate.errors import ObjectNotFound, StorageUnavailable
from dbcrate.model import ObjectInfo
from dbcrate.storage.base import check_key, check_prefix, run_probe
from dbcrate.storage.s3.errors import Where, call, error_code, translate
from dbcrate.storage.s3.upload import MAX_PART, MIN_PART, MiB, StreamUpload

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client

READ_CHUNK = MiB
CHECKSUM_MODES = ("when_required", "when_supported")


def _number(target: TargetConfig, key: str, default: float) -> float:
    value = target.options.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise target.error(key, f"expected a positive number of seconds, got {value!r}")
    return float(value)


def _public_endpoint(endpoint: str) -> str:
    """The endpoint URL without any ``user:password@`` part."""
    parts = urlsplit(endpoint)
    if parts.username is None and parts.password is None:
        return endpoint
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


class S3Storage:
    """A bucket (and optional prefix) on AWS S3 or any S3-compatible server."""

    def __init__(
        self,
        bucket: str,
        *,
        name: str = "s3",
        prefix: str = "",
        endpoint: str | None = None,
        region: str = "us-east-1",
        access_key: str | None = None,
        secret_key: str | None = None,
        session_token: str | None = None,
        path_style: bool | None = None,
        part_size: int = 8 * MiB,
        storage_class: str | None = None,
        checksums: str = "when_required",
        verify_tls: bool = True,
        ca_bundle: str | None = None,
        connect_timeout: float = 10.0,
        read_timeout: float = 60.0,
        max_attempts: int = 3,
        abort_timeout: float = 15.0,
        max_parts: int = 10_000,
    ) -> None:
        if not MIN_PART <= part_size <= MAX_PART:
            raise ValueError(f"part_size must be between {MIN_PART} and {MAX_PART} bytes")
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self.name = name
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._root = f"{self.prefix}/" if self.prefix else ""
        self.endpoint = endpoint
        self.region = region
        self.part_size = part_size
        self.max_attempts = max_attempts
        self.abort_timeout = abort_timeout
        self.max_parts = max_parts
        self._extra: dict[str, Any] = {"StorageClass": storage_class} if storage_class else {}
        if path_style is None:
            path_style = endpoint is not None
        addressing: Literal["auto", "virtual", "path"] = (
            "path" if path_style else ("virtual" if endpoint else "auto")
        )
        if checksums not in CHECKSUM_MODES:
            raise ValueError(f"checksums must be one of {CHECKSUM_MODES}")
        mode = cast(Literal["when_supported", "when_required"], checksums)
        config = Config(
            region_name=region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "total_max_attempts": max_attempts},
            s3={"addressing_style": addressing},
            request_checksum_calculation=mode,
            response_checksum_validation=mode,
            user_agent_extra="dbcrate",
        )
        session = boto3.session.Session(
            aws_access_key_id=access_key,
            aws_secret_access_key=secret_key,
            aws_session_token=session_token,
            region_name=region,
        )
        verify: bool | str = ca_bundle if (verify_tls and ca_bundle) else verify_tls
        self._client: S3Client = session.client(
            "s3", endpoint_url=endpoint, config=config, verify=verify
        )
        shown = _public_endpoint(endpoint) if endpoint else f"aws {region}"
        secrets = tuple(s for s in (access_key, secret_key, session_token) if s)
        self._where = Where(bucket=bucket, endpoint=shown, secrets=secrets)

    @classmethod
    def from_config(cls, target: TargetConfig) -> S3Storage:
        """Build from a target's options (see the module docstring of docs/config.md).
        Raises ``ConfigError`` naming the offending key."""
        endpoint = target.get_str("endpoint") or None
        access_key = target.get_str("access_key") or None
        secret_key = target.get_str("secret_key") or None
        if (access_key is None) != (secret_key is None):
            missing = "secret_key" if secret_key is None else "access_key"
            raise target.error(
                missing,
                "access_key and secret_key must be set together",
                "set both (or neither, to use the AWS credential chain)",
            )
        part_mib = target.get_int("part_size", 8)
        if not MIN_PART // MiB <= part_mib <= MAX_PART // MiB:
            raise target.error(
                "part_size", f"must be between {MIN_PART // MiB} and {MAX_PART // MiB} (MiB)"
            )
        checksums = target.get_str("checksums", "when_required") or "when_required"
        if checksums not in CHECKSUM_MODES:
            raise target.error("checksums", f"expected one of {', '.join(CHECKSUM_MODES)}")
        ca_bundle = target.get_str("ca_bundle") or None
        if ca_bundle and not Path(ca_bundle).expanduser().is_file():
            raise target.error("ca_bundle", f"no such file: {ca_bundle}")
        max_attempts = target.get_int("max_attempts", 3)
        if max_attempts < 1:
            raise target.error("max_attempts", "must be at least 1")
        max_parts = target.get_int("max_parts", 10_000)
        if not 1 <= max_parts <= 10_000:
            raise target.error("max_parts", "must be between 1 and 10000")
        return cls(
            target.require_str("bucket"),
            name=target.name,
            prefix=target.get_str("prefix") or "",
            endpoint=endpoint,
            region=target.get_str("region") or "us-east-1",
            access_key=access_key,
            secret_key=secret_key,
            session_token=target.get_str("session_token") or None,
            path_style=target.get_bool("path_style", endpoint is not None),
            part_size=part_mib * MiB,
            storage_class=target.get_str("storage_class") or None,
            checksums=checksums,
            verify_tls=target.get_bool("verify_tls", True),
            ca_bundle=str(Path(ca_bundle).expanduser()) if ca_bundle else None,
            connect_timeout=_number(target, "connect_timeout", 10.0),
            read_timeout=_number(target, "read_timeout", 60.0),
            max_attempts=max_attempts,
            abort_timeout=_number(target, "abort_timeout", 15.0),
            max_parts=max_parts,
        )

    def __repr__(self) -> str:
        return f"S3Storage({self.describe()!r})"

    def describe(self) -> str:
        """``s3://bucket/prefix (endpoint)``; never credentials."""
        return f"s3://{self.bucket}/{self.prefix} ({self._where.endpoint})"

    @property
    def client(self) -> S3Client:
        """The underlying boto3 client (for tests and maintenance tools)."""
        return self._client

    def _full(self, key: str) -> str:
        return self._root + check_key(key)

    def _call(self, op: str, fn: Any, key: str = "") -> Any:
        return call(op, fn, self._where, key)

    # -- Storage ---------------------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Stream ``chunks`` to ``key``. Atomic: PutObject for less than one part, else a
        multipart upload that only becomes visible on completion. Memory holds one part.
        Part uploads, completion and abort are retried (they are buffered, hence
        replayable). If ``chunks`` raises, the upload is aborted and the same exception
        propagates; if S3 fails, raises ``StorageError`` naming bucket, key, operation
        and the provider's error code."""
        full = self._full(key)
        upload = StreamUpload(
            self._client,
            self._where,
            full,
            part_size=self.part_size,
            extra=self._extra,
            attempts=self.max_attempts,
            abort_timeout=self.abort_timeout,
            max_parts=self.max_parts,
        )
        size = upload.run(chunks)
        return ObjectInfo(key=key, size=size, modified=datetime.now(UTC))

    def get(self, key: str, start: int | None = None, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes ``[start, end)`` of ``key`` (clamped to its size) in ~1 MiB chunks.
        Raises ``ObjectNotFound`` at once for a missing key, ``StorageError`` otherwise
        (during iteration too, if the connection breaks)."""
        full = self._full(key)
        begin = start or 0
        if begin < 0 or (end is not None and end < begin):
            raise ValueError(f"invalid byte range [{start}, {end})")
        if end is not None and end == begin:
            self._call(
                "head object", lambda: self._client.head_object(Bucket=self.bucket, Key=full), full
            )
            return iter(())
        kwargs: dict[str, Any] = {}
        if begin or end is not None:
            kwargs["Range"] = f"bytes={begin}-" + ("" if end is None else str(end - 1))
        try:
            resp = self._client.get_object(Bucket=self.bucket, Key=full, **kwargs)
        except ClientError as exc:
            if error_code(exc) == "InvalidRange":  # start beyond the end of the object
                return iter(())
            raise translate(exc, "get object", self._where, full) from exc
        except BotoCoreError as exc:
            raise translate(exc, "get object", self._where, full) from exc
        return self._stream(resp["Body"], full)

    def _stream(self, body: Any, full: str) -> Iterator[bytes]:
        try:
            yield from body.iter_chunks(READ_CHUNK)
        except (BotoCoreError, OSError) as exc:
            raise StorageUnavailable(
                f"reading {self._where.url(full)} from {self._where.endpoint} failed: "
                f"{type(exc).__name__}",
                "check the network and the S3 server, then try again",
            ) from exc
        finally:
            body.close()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order (ListObjectsV2, paged).
        Multipart uploads in progress are never listed. Raises ``StorageError``."""
        check_prefix(prefix)
        full_prefix = self._root + prefix
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=full_prefix
        )
        try:
            for page in pages:
                for obj in page.get("Contents", []):
                    rel = obj["Key"][len(self._root) :]
                    if not rel or rel.endswith("/"):
                        continue  # "directory" markers made by other tools
                    yield ObjectInfo(rel, obj["Size"], obj.get("LastModified"))
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "list objects", self._where, full_prefix) from exc

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error. Raises ``StorageError``."""
        full = self._full(key)
        try:
            self._call(
                "delete object",
                lambda: self._client.delete_object(Bucket=self.bucket, Key=full),
                full,
            )
        except ObjectNotFound:
            pass

    def probe(self) -> None:
        """Write, read, list and delete a probe object under ``.dbcrate-probe/``.
        Raises ``StorageError`` naming the step that failed."""
        run_probe(self)

    def settings(self) -> tuple[str | None, bool | None, builtins.list[str]]:
        """(versioning, object_lock, notes) of the bucket for ``target check``; a setting
        the credentials cannot read is None with a note. Never raises for that."""
        notes: builtins.list[str] = []
        versioning: str | None = None
        lock: bool | None = None
        try:
            status = self._client.get_bucket_versioning(Bucket=self.bucket).get("Status")
            versioning = {"Enabled": "enabled", "Suspended": "suspended"}.get(
                str(status), "disabled")
        except (ClientError, BotoCoreError) as exc:
            notes.append(f"versioning unreadable ({_code(exc)}): needs s3:GetBucketVersioning")
        try:
            conf = self._client.get_object_lock_configuration(Bucket=self.bucket)
            lock = conf.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled") == "Enabled"
        except ClientError as exc:
            if error_code(exc) == "ObjectLockConfigurationNotFoundError":
                lock = False
            else:
                notes.append(f"object lock unreadable ({_code(exc)}): needs "
                             "s3:GetBucketObjectLockConfiguration")
        except BotoCoreError as exc:
            notes.append(f"object lock unreadable ({_code(exc)})")
        return versioning, lock, notes

    def abort_incomplete(self, prefix: str = "", older_than: timedelta = timedelta(days=1)) -> int:
        """Abort multipart uploads under ``prefix`` with no activity (start or last part)
        for ``older_than`` (left by crashed runs). Returns how many were aborted. Raises
        ``StorageError``."""
        return self.leftovers(prefix, older_than, remove=True)

    def leftovers(self, prefix: str, older_than: timedelta, *, remove: bool = False) -> int:
        """Count (and with ``remove`` abort) the multipart uploads under ``prefix`` that
        neither started nor received a part for ``older_than``: those of killed runs (a
        live upload sends a part at least every ``part_size`` bytes). Raises
        ``StorageError``."""
        check_prefix(prefix)
        full_prefix = self._root + prefix
        cutoff = datetime.now(UTC) - older_than
        pages = self._client.get_paginator("list_multipart_uploads").paginate(
            Bucket=self.bucket, Prefix=full_prefix
        )
        stale: list[tuple[str, str]] = []
        try:
            for page in pages:
                for up in page.get("Uploads", []):
                    if up["Initiated"] <= cutoff and self._idle_since(up, cutoff):
                        stale.append((up["Key"], up["UploadId"]))
        except (ClientError, BotoCoreError) as exc:
            raise translate(exc, "list multipart uploads", self._where, full_prefix) from exc
        if not remove:
            return len(stale)
        count = 0
        for key, upload_id in stale:
            if self._abort_one(key, upload_id):
                count += 1
        return count

    def _idle_since(self, upload: Any, cutoff: datetime) -> bool:
        """Whether no part of ``upload`` arrived after ``cutoff``."""
        pages = self._client.get_paginator("list_parts").paginate(
            Bucket=self.bucket, Key=upload["Key"], UploadId=upload["UploadId"]
        )
        try:
            for page in pages:
                if any(p["LastModified"] > cutoff for p in page.get("Parts", [])):
                    return False
        except ClientError as exc:
            if error_code(exc) == "NoSuchUpload":
                return False  # completed or aborted meanwhile
            raise
        return True

    def _abort_one(self, key: str, upload_id: str) -> bool:
        def abort() -> bool:
            try:
                self._client.abort_multipart_upload(Bucket=self.bucket, Key=key, UploadId=upload_id)
            except ClientError as exc:
                if error_code(exc) == "NoSuchUpload":
                    return False  # finished or aborted meanwhile
                raise
            return True

        return call("abort multipart upload", abort, self._where, key, attempts=self.max_attempts)


def _code(exc: Exception) -> str:
    return error_code(exc) if isinstance(exc, ClientError) else type(exc).__name__


__all__ = ["S3Storage"]
