"""Google Cloud Storage as a storage target (google-cloud-storage).

Objects are at ``{prefix}/{key}`` in ``bucket``. Uploads are resumable with
``chunk_size`` MiB (default 16) in memory: the object appears only with the last chunk,
and a failed upload is cancelled (DELETE of the session; real GCS answers 499). A session
that a killed run left open is never listed and expires after a week; GCS cannot list
open sessions, so ``leftovers`` has nothing to do. The SDK's own retries (which would try
a dead server for 120 s) are off: every call is tried ``max_attempts`` times (3) here.
Credentials: ``credentials_file`` (a service-account JSON), else Application Default
Credentials; with ``endpoint`` and no ``credentials_file`` requests are anonymous (an
emulator). Only this module imports the Google SDK.
"""

from __future__ import annotations

import builtins
import logging
import time
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from google.api_core import exceptions as gexc
from google.auth.exceptions import GoogleAuthError, TransportError
from google.cloud import storage as gcs
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout as RequestsTimeout

from dbcrate.config import TargetConfig
from dbcrate.errors import ObjectNotFound, StorageError, StorageUnavailable
from dbcrate.model import ObjectInfo
from dbcrate.storage.base import check_key, check_prefix, run_probe

# the SDK logs connection details (user names, URLs, headers) at INFO/DEBUG; dbcrate's own
# messages say what matters, so `-v` never shows the SDK's (secrets stay out of logs)
for _name in ("google", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

T = TypeVar("T")
MiB = 1 << 20
READ_CHUNK = 4 * MiB
#: the IAM permission each operation needs
PERMISSION = {"list": "storage.objects.list", "read": "storage.objects.get",
              "write": "storage.objects.create", "delete": "storage.objects.delete",
              "settings": "storage.buckets.get"}
_TRANSIENT = (gexc.ServiceUnavailable, gexc.InternalServerError, gexc.TooManyRequests,
              gexc.GatewayTimeout, gexc.BadGateway, RequestsConnectionError, RequestsTimeout,
              TransportError, ConnectionError, TimeoutError)


def translate(exc: BaseException, op: str, where: str, bucket: str, blob: str,
              credential: str) -> StorageError:
    """A dbcrate error for an SDK error of ``op`` on ``bucket/blob``; never a secret."""
    head = f"{where}: gcs {op} of gs://{bucket}/{blob}"
    if isinstance(exc, gexc.NotFound):
        if op in ("list", "settings") or "bucket" in str(exc).lower():
            return StorageError(f"{head}: bucket {bucket!r} does not exist",
                                "create it (dbcrate never creates one) or fix `bucket`")
        return ObjectNotFound(f"no object {blob!r} in gs://{bucket}",
                              "run `dbcrate list` to see what exists")
    if isinstance(exc, gexc.Unauthorized):
        return StorageError(f"{head}: the {credential} was refused (401)",
                            "check credentials_file (or the ADC login) and that it is valid")
    if isinstance(exc, gexc.Forbidden):
        return StorageError(f"{head}: denied (403)",
                            f"grant {PERMISSION.get(op, op)} on bucket {bucket} to the "
                            f"{credential}'s account")
    if isinstance(exc, _TRANSIENT):
        return StorageUnavailable(f"{head} failed: {type(exc).__name__}",
                                  "check the network and the endpoint, then try again")
    if isinstance(exc, GoogleAuthError):
        return StorageError(f"{head}: cannot get credentials: {type(exc).__name__}",
                            "set credentials_file, or log in for ADC "
                            "(`gcloud auth application-default login`)")
    code = getattr(exc, "code", None)
    return StorageError(f"{head} failed: {type(exc).__name__} {code or ''}".rstrip())


class GcsStorage:
    """A bucket (and optional prefix) on Google Cloud Storage. See the module docstring."""

    def __init__(self, client: gcs.Client, bucket: str, *, name: str = "gcs", prefix: str = "",
                 chunk_size: int = 16 * MiB, storage_class: str | None = None,
                 max_attempts: int = 3, endpoint: str | None = None,
                 credential: str = "default credentials") -> None:
        self.name = name
        self.bucket_name = bucket
        self.prefix = prefix.strip("/")
        self._root = f"{self.prefix}/" if self.prefix else ""
        self.chunk_size = chunk_size
        self.storage_class = storage_class
        self.max_attempts = max_attempts
        self.endpoint = endpoint or "https://storage.googleapis.com"
        self.credential = credential
        self._client = client
        self._bucket = client.bucket(bucket)

    @classmethod
    def from_config(cls, target: TargetConfig) -> GcsStorage:
        """Options: bucket, prefix, credentials_file, endpoint, storage_class, chunk_size
        (MiB, 16), max_attempts (3). Raises ``ConfigError``."""
        from google.auth.credentials import AnonymousCredentials

        bucket = target.require_str("bucket")
        chunk = target.get_int("chunk_size", 16)
        if not 1 <= chunk <= 1024:
            raise target.error("chunk_size", "must be between 1 and 1024 (MiB)")
        attempts = target.get_int("max_attempts", 3)
        if attempts < 1:
            raise target.error("max_attempts", "must be at least 1")
        endpoint = target.get_str("endpoint") or None
        creds_file = target.get_str("credentials_file") or None
        options = {"api_endpoint": endpoint} if endpoint else None
        try:
            if creds_file:
                path = Path(creds_file).expanduser()
                if not path.is_file():
                    raise target.error("credentials_file", f"no such file: {creds_file}")
                client = gcs.Client.from_service_account_json(str(path), client_options=options)
                used = f"service account of {creds_file}"
            elif endpoint:
                client = gcs.Client(project="dbcrate",
                                    credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
                                    client_options=options)
                used = "anonymous access"
            else:
                client = gcs.Client(client_options=options)
                used = "application default credentials"
        except (GoogleAuthError, ValueError, OSError) as exc:
            raise target.error("credentials_file", "cannot load Google credentials: "
                               f"{type(exc).__name__}", "set credentials_file to a service-"
                               "account JSON key, or log in for ADC") from None
        return cls(client, bucket, name=target.name, prefix=target.get_str("prefix") or "",
                   chunk_size=chunk * MiB, storage_class=target.get_str("storage_class") or None,
                   max_attempts=attempts, endpoint=endpoint, credential=used)

    def __repr__(self) -> str:
        return f"GcsStorage({self.describe()!r})"

    def describe(self) -> str:
        """``gs://bucket/prefix (endpoint)``; never a credential."""
        return f"gs://{self.bucket_name}/{self.prefix} ({self.endpoint})"

    def _full(self, key: str) -> str:
        return self._root + check_key(key)

    def _error(self, exc: BaseException, op: str, blob: str) -> StorageError:
        return translate(exc, op, f"target {self.name}", self.bucket_name, blob, self.credential)

    def _call(self, op: str, blob: str, fn: Callable[[], T]) -> T:
        """``fn()``, tried up to ``max_attempts`` times on transient errors."""
        for attempt in range(self.max_attempts):
            try:
                return fn()
            except _TRANSIENT as exc:
                if attempt + 1 >= self.max_attempts:
                    raise self._error(exc, op, blob) from None
                time.sleep(min(0.5 * 2**attempt, 4.0))
            except (gexc.GoogleAPIError, GoogleAuthError) as exc:
                raise self._error(exc, op, blob) from None
        raise AssertionError("unreachable")  # pragma: no cover

    # -- Storage ---------------------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Resumable upload of ``chunks``; the object appears with the last chunk
        (atomic), replacing an existing one. If ``chunks`` raises or GCS fails, the
        session is cancelled; the same exception propagates (an SDK error as
        ``StorageError``)."""
        full = self._full(key)
        blob = self._bucket.blob(full)
        if self.storage_class:
            blob.storage_class = self.storage_class
        writer = blob.open("wb", chunk_size=self.chunk_size, ignore_flush=True, retry=None,
                           content_type="application/octet-stream")
        size = 0
        try:
            try:
                for chunk in chunks:
                    writer.write(chunk)
                    size += len(chunk)
                writer.close()
            except (gexc.GoogleAPIError, GoogleAuthError, *_TRANSIENT) as exc:
                raise self._error(exc, "write", full) from None
        except BaseException:
            try:
                writer.terminate()  # cancels the resumable session, if one was opened
            except Exception:  # noqa: S110 - best effort; the session expires anyway
                pass
            raise
        return ObjectInfo(key=key, size=size, modified=blob.updated or datetime.now(UTC))

    def get(self, key: str, start: int | None = None, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes ``[start, end)`` of ``key`` (clamped to its size), range by range
        of the same generation. Raises ``ObjectNotFound`` at once for a missing key,
        ``StorageError`` otherwise."""
        full = self._full(key)
        begin = start or 0
        if begin < 0 or (end is not None and end < begin):
            raise ValueError(f"invalid byte range [{start}, {end})")
        blob = self._bucket.blob(full)
        self._call("read", full, lambda: blob.reload(retry=None, timeout=30))
        # download from the configured endpoint, never from a server-supplied link (an
        # emulator builds it from the Host header of whoever uploaded the object)
        blob._properties.pop("mediaLink", None)
        size = blob.size or 0
        stop = size if end is None else min(end, size)
        return self._read(blob, full, begin, stop)

    def _read(self, blob: Any, full: str, offset: int, stop: int) -> Iterator[bytes]:
        gen = blob.generation
        while offset < stop:
            last = min(offset + READ_CHUNK, stop) - 1

            def fetch(o: int = offset, e: int = last) -> bytes:
                return blob.download_as_bytes(  # type: ignore[no-any-return]
                    start=o, end=e, if_generation_match=gen, checksum=None, retry=None,
                    timeout=60)

            data = self._call("read", full, fetch)
            if not data:
                return
            offset += len(data)
            yield data

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order. Raises ``StorageError``."""
        check_prefix(prefix)
        full_prefix = self._root + prefix

        def fetch() -> builtins.list[ObjectInfo]:
            out = []
            for b in self._client.list_blobs(self._bucket, prefix=full_prefix or None,
                                             retry=None, timeout=30):
                rel = b.name[len(self._root):]
                if rel and not rel.endswith("/"):
                    out.append(ObjectInfo(rel, b.size or 0, b.updated))
            return sorted(out, key=lambda o: o.key)

        return iter(self._call("list", full_prefix, fetch))

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error. Raises ``StorageError``."""
        full = self._full(key)
        try:
            self._call("delete", full, lambda: self._bucket.blob(full).delete(retry=None,
                                                                               timeout=30))
        except ObjectNotFound:
            pass

    def leftovers(self, prefix: str, older_than: timedelta, *, remove: bool = False) -> int:
        """Always 0: GCS cannot list open resumable sessions; they are never listed as
        objects and expire after a week."""
        check_prefix(prefix)
        return 0

    def probe(self) -> None:
        """Write, read, list and delete a probe object. Raises ``StorageError`` naming
        the step that failed."""
        run_probe(self)

    def settings(self) -> tuple[str | None, bool | None, builtins.list[str]]:
        """(versioning, retention-policy lock, notes) for ``target check``; unreadable
        settings are None with a note."""
        try:
            b = self._client.get_bucket(self.bucket_name, retry=None, timeout=30)
        except (gexc.GoogleAPIError, GoogleAuthError, *_TRANSIENT) as exc:
            why = self._error(exc, "settings", "").message
            return None, None, [f"bucket settings unreadable: {why}"]
        versioning = "enabled" if b.versioning_enabled else "disabled"
        period = b.retention_period
        notes = [f"retention policy: objects are kept {period} s"] if period else []
        return versioning, bool(period), notes
