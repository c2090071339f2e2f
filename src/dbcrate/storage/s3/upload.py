"""The streaming S3 upload of ``S3Storage`` (errors and retries: ``s3.errors``).

The upload holds exactly one part in memory. Objects smaller than one part go up with a
single PutObject; larger ones with a multipart upload that is created when the first
part is full, completed after the last part, and aborted if anything fails.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, cast

from botocore.exceptions import (
    BotoCoreError,
    ClientError,
)

from dbcrate import interrupt
from dbcrate.errors import StorageError
from dbcrate.storage.s3.errors import Where, call, error_code

if TYPE_CHECKING:
    from mypy_boto3_s3.client import S3Client
    from mypy_boto3_s3.type_defs import CompletedPartTypeDef

T = TypeVar("T")
log = logging.getLogger("dbcrate.storage.s3")

MiB = 1 << 20
MIN_PART = 5 * MiB
MAX_PART = 5 * 1024 * MiB
MAX_PARTS = 10_000
#: Every this many parts the part size doubles, so 10,000 parts reach ~1000x part_size.
#: With a lower ``max_parts`` (Scaleway: 1000) the size doubles every max_parts/10 parts.
PARTS_PER_SIZE_STEP = 1000


def content_md5(body: bytes | bytearray) -> str:
    """The base64 MD5 S3 wants in Content-MD5 (Object Lock buckets require it)."""
    return base64.b64encode(hashlib.md5(body, usedforsecurity=False).digest()).decode()

class StreamUpload:
    """One ``put``: buffer one part at a time, upload, complete or abort."""

    def __init__(
        self,
        client: S3Client,
        where: Where,
        key: str,
        *,
        part_size: int,
        extra: Mapping[str, Any],
        attempts: int,
        abort_timeout: float,
        max_parts: int = MAX_PARTS,
    ) -> None:
        self.client = client
        self.where = where
        self.key = key
        self.part_size = part_size
        self.extra = dict(extra)
        self.attempts = attempts
        self.abort_timeout = abort_timeout
        self.max_parts = max_parts
        self.step = max(max_parts // 10, 1) if max_parts < MAX_PARTS else PARTS_PER_SIZE_STEP
        self.upload_id: str | None = None
        self.parts: list[CompletedPartTypeDef] = []

    def _call(self, op: str, fn: Callable[[], T]) -> T:
        return call(op, fn, self.where, self.key, attempts=self.attempts)

    def _size_of(self, part_number: int) -> int:
        step = (part_number - 1) // self.step
        return min(self.part_size << step, MAX_PART)

    def run(self, chunks: Iterable[bytes]) -> int:
        """Upload ``chunks``; returns the object's size. Atomic. If ``chunks`` raises,
        the multipart upload is aborted and the same exception propagates. Raises
        ``StorageError`` if S3 fails (after aborting the upload)."""
        size = 0
        # one part's buffer, allocated at its size (growing it by appends would hold up to
        # an eighth more, and copy it on the way), filled up to ``filled``
        buf = bytearray(self._size_of(1))
        filled = 0
        final_sent = False  # a PutObject/Complete may have reached S3 (its answer lost)
        try:
            for chunk in chunks:
                view = memoryview(chunk).cast("B")
                size += len(view)
                while len(view):
                    take = min(len(buf) - filled, len(view))
                    buf[filled : filled + take] = view[:take]
                    filled += take
                    view = view[take:]
                    if filled == len(buf):
                        self._upload_part(buf)
                        buf, filled = bytearray(), 0  # the sent part is freed first
                        buf = bytearray(self._size_of(len(self.parts) + 1))
                del view
            del buf[filled:]
            if self.upload_id is None:
                body = buf
                final_sent = True
                self._call(
                    "put object",
                    lambda: self.client.put_object(
                        Bucket=self.where.bucket,
                        Key=self.key,
                        Body=cast(bytes, body),  # botocore accepts bytearray (no copy)
                        ContentMD5=content_md5(body),
                        **self.extra,
                    ),
                )
            else:
                if buf:
                    self._upload_part(buf)
                final_sent = True
                self._complete(size)
        except BaseException as exc:
            if final_sent:  # interrupted while S3 may have made the object: remove it
                self._delete_quietly()
            if self.upload_id is not None:
                aborted = self._abort()
                if not aborted and isinstance(exc, StorageError):
                    exc.hint = (
                        f"{exc.hint}; an incomplete multipart upload may remain under "
                        f"{self.where.url(self.key)}: a bucket lifecycle rule "
                        "(AbortIncompleteMultipartUpload) or the next cleanup removes it"
                    )
            raise
        return size

    def _upload_part(self, buf: bytearray) -> None:
        if self.upload_id is None:
            resp = self._call(
                "create multipart upload",
                lambda: self.client.create_multipart_upload(
                    Bucket=self.where.bucket, Key=self.key, **self.extra
                ),
            )
            self.upload_id = resp["UploadId"]
        number = len(self.parts) + 1
        if number > self.max_parts:
            raise StorageError(
                f"object {self.where.url(self.key)} needs more than {self.max_parts} parts",
                "raise the target's part_size (or max_parts, if the provider allows more)",
            )
        upload_id = self.upload_id
        resp_part = self._call(
            f"upload part {number}",
            lambda: self.client.upload_part(
                Bucket=self.where.bucket,
                Key=self.key,
                UploadId=upload_id,
                PartNumber=number,
                Body=cast(bytes, buf),  # botocore accepts bytearray (no copy)
                ContentMD5=content_md5(buf),
            ),
        )
        self.parts.append({"ETag": resp_part["ETag"], "PartNumber": number})

    def _complete(self, size: int) -> None:
        assert self.upload_id is not None
        upload_id = self.upload_id
        tries = 0

        def complete() -> None:
            nonlocal tries
            tries += 1
            try:
                self.client.complete_multipart_upload(
                    Bucket=self.where.bucket,
                    Key=self.key,
                    UploadId=upload_id,
                    MultipartUpload={"Parts": self.parts},
                )
            except ClientError as exc:
                # A retry after a lost response: the first attempt did complete.
                if tries > 1 and error_code(exc) == "NoSuchUpload" and self._exists(size):
                    return
                raise

        self._call("complete multipart upload", complete)
        self.upload_id = None

    def _delete_quietly(self) -> None:
        """Best effort: remove the object at this upload's key (created by this very
        upload if it exists: keys are unique per backup). Never raises."""
        try:
            self.client.delete_object(Bucket=self.where.bucket, Key=self.key)
        except (ClientError, BotoCoreError, OSError) as exc:
            log.warning("could not remove %s after an interrupted upload: %s",
                        self.where.url(self.key), type(exc).__name__)

    def _exists(self, size: int) -> bool:
        try:
            head = self.client.head_object(Bucket=self.where.bucket, Key=self.key)
        except (ClientError, BotoCoreError):
            return False
        return head.get("ContentLength") == size

    def _abort(self) -> bool:
        """Abort the open upload, retrying transient failures for up to abort_timeout
        seconds. Returns whether it is gone; logs (never raises) otherwise."""
        upload_id = self.upload_id
        assert upload_id is not None

        def abort() -> None:
            try:
                self.client.abort_multipart_upload(
                    Bucket=self.where.bucket, Key=self.key, UploadId=upload_id
                )
            except ClientError as exc:
                if error_code(exc) != "NoSuchUpload":
                    raise

        deadline = time.monotonic() + self.abort_timeout
        try:
            call(
                "abort multipart upload",
                abort,
                self.where,
                self.key,
                base_delay=0.25,
                deadline=deadline,
            )
        except StorageError as err:
            log.warning(
                "could not abort multipart upload of %s: %s", self.where.url(self.key), err.message
            )
            return False
        self.upload_id = None
        interrupt.note_removed(f"partial upload to {self.where.url()}")
        return True
