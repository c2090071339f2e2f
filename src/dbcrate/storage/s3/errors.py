"""S3 error translation and the retry loop for single requests: a botocore exception
becomes a ``StorageError`` that names the bucket, the operation and the fix, never a
credential."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    ConnectTimeoutError,
    NoCredentialsError,
    PartialCredentialsError,
    ReadTimeoutError,
    SSLError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from dbcrate.errors import ObjectNotFound, StorageError, StorageUnavailable
from dbcrate.storage.retry import backoff_delays

log = logging.getLogger("dbcrate.storage.s3")

T = TypeVar("T")

_TRANSIENT_CODES = {
    "RequestTimeout",
    "SlowDown",
    "Throttling",
    "ThrottlingException",
    "RequestThrottled",
    "InternalError",
    "ServiceUnavailable",
    "RequestTimeTooSkewed",
}
_AUTH_CODES = {
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "InvalidToken",
    "ExpiredToken",
    "TokenRefreshRequired",
    "InvalidSecurity",
}


def error_code(exc: ClientError) -> str:
    """The provider's error code (``NoSuchKey``, ``AccessDenied``, or the HTTP status)."""
    err = exc.response.get("Error", {})
    code = err.get("Code") or str(exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode"))
    return str(code)


@dataclass(frozen=True)
class Where:
    """What a request was about, for messages. Holds the strings to scrub, never prints them."""

    bucket: str
    endpoint: str
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def scrub(self, text: str) -> str:
        for s in self.secrets:
            if s:
                text = text.replace(s, "***")
        return text


#: operation (its first words) -> the IAM action it needs
_PERMISSIONS = (("list multipart", "s3:ListBucketMultipartUploads"), ("list parts",
                "s3:ListMultipartUploadParts"), ("list", "s3:ListBucket"),
                ("get", "s3:GetObject"), ("head", "s3:GetObject"),
                ("delete", "s3:DeleteObject"), ("abort", "s3:AbortMultipartUpload"))


def _permission(op: str) -> str:
    return next((perm for start, perm in _PERMISSIONS if op.startswith(start)),
                "s3:PutObject")


def translate(exc: Exception, op: str, where: Where, key: str = "") -> StorageError:
    """Map a botocore exception to a ``StorageError`` (``StorageUnavailable`` when a
    retry may help, ``ObjectNotFound`` for a missing key). Never includes credentials."""
    url = where.url(key)
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        if code in ("NoSuchKey", "404", "NotFound") and key:
            return ObjectNotFound(f"no object {url}", "run `dbcrate list` to see what exists")
        if code == "NoSuchBucket" or (code in ("404", "NotFound") and not key):
            return StorageError(
                f"s3 bucket {where.bucket!r} does not exist at {where.endpoint}",
                "create the bucket, or fix `bucket` (and `endpoint`, `region`) in the target",
            )
        if code in _AUTH_CODES:
            return StorageError(
                f"s3 rejected the credentials ({code}) for {op} of {url} at {where.endpoint}",
                "check the target's access_key and secret_key (or the AWS credential chain)",
            )
        if code in ("AccessDenied", "403", "Forbidden", "AllAccessDisabled"):
            return StorageError(
                f"access denied by s3 for {op} of {url} ({code}): needs {_permission(op)}",
                f"grant {_permission(op)} on bucket {where.bucket} (dbcrate needs "
                "s3:PutObject, GetObject, ListBucket, DeleteObject and AbortMultipartUpload)",
            )
        detail = where.scrub(str(exc.response.get("Error", {}).get("Message") or ""))
        message = f"s3 {op} of {url} failed: {code}" + (f": {detail}" if detail else "")
        if code in _TRANSIENT_CODES or status >= 500:
            return StorageUnavailable(message)
        return StorageError(message)
    if isinstance(exc, SSLError):
        return StorageError(
            f"tls error talking to s3 endpoint {where.endpoint} during {op} of {url}",
            "check the endpoint's certificate; set `ca_bundle` for a private CA",
        )
    if isinstance(exc, BotoConnectionError | ConnectionClosedError | ReadTimeoutError):
        kind = {
            ConnectTimeoutError: "connect timed out",
            ReadTimeoutError: "read timed out",
            ConnectionClosedError: "connection closed by the server",
        }.get(type(exc), "connection failed")
        return StorageUnavailable(
            f"cannot reach s3 endpoint {where.endpoint} (during {op} of {url}): {kind}",
            "check `endpoint`, the network, and that the S3 server is running",
        )
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return StorageError(
            "no s3 credentials found",
            "set access_key and secret_key on the target, or configure the AWS credential chain",
        )
    if isinstance(exc, BotoCoreError):
        name = type(exc).__name__
        return StorageUnavailable(f"s3 {op} of {url} failed: {name}: {where.scrub(str(exc))}")
    return StorageError(f"s3 {op} of {url} failed: {type(exc).__name__}")


def call(
    op: str,
    fn: Callable[[], T],
    where: Where,
    key: str = "",
    *,
    attempts: int = 1,
    base_delay: float = 0.5,
    deadline: float | None = None,
) -> T:
    """Run ``fn``; retry transient failures ``attempts`` times (or until ``deadline``,
    a ``time.monotonic()`` value) with exponential backoff. Raises ``StorageError``."""
    delays = backoff_delays(attempts if deadline is None else 1 << 30, base_delay)
    while True:
        try:
            return fn()
        except (ClientError, BotoCoreError) as exc:
            err = translate(exc, op, where, key)
            delay = next(delays, None)
            if deadline is not None and delay is not None:
                delay = min(delay, deadline - time.monotonic())
                delay = delay if delay > 0 else None
            if not isinstance(err, StorageUnavailable) or delay is None:
                raise err from exc
            log.info("%s; retrying in %.1fs", err.message, delay)
            time.sleep(delay)


