"""Azure Blob Storage (and Azurite) as a storage target (azure-storage-blob).

Objects are block blobs at ``{prefix}/{key}`` in ``container``. Uploads stage one block
at a time (``block_size`` MiB in memory, default 8) and become visible only with
``commit_block_list``: a failed or cut upload leaves only uncommitted blocks, which are
never listed and which the service garbage-collects (after 7 days), so ``leftovers``
has nothing to do. Credentials (``connection_string``, ``account_key``, ``sas_token``)
live only inside the SDK client; ``describe`` and messages never show them. Only this
module imports the Azure SDK.
"""

from __future__ import annotations

import base64
import builtins
import logging
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobBlock, BlobServiceClient, StandardBlobTier

from dbcrate.config import TargetConfig
from dbcrate.errors import ObjectNotFound, StorageError, StorageUnavailable
from dbcrate.model import ObjectInfo
from dbcrate.storage.base import check_key, check_prefix, run_probe

# the SDK logs connection details (user names, URLs, headers) at INFO/DEBUG; dbcrate's own
# messages say what matters, so `-v` never shows the SDK's (secrets stay out of logs)
for _name in ("azure", "urllib3"):
    logging.getLogger(_name).setLevel(logging.WARNING)

MiB = 1 << 20
READ_CHUNK = 4 * MiB
#: SAS permission letter each operation needs
_SAS_PERMISSION = {"list": "l", "read": "r", "write": "w", "delete": "d", "commit": "w"}


class AzureStorage:
    """A container (and optional prefix) on Azure Blob Storage. See the module docstring."""

    def __init__(self, service: BlobServiceClient, container: str, *, name: str = "azure",
                 prefix: str = "", block_size: int = 8 * MiB, tier: str | None = None,
                 credential: str = "default credential", secrets: tuple[str, ...] = ()) -> None:
        self.name = name
        self.container = container
        self.prefix = prefix.strip("/")
        self._root = f"{self.prefix}/" if self.prefix else ""
        self.block_size = block_size
        self.tier = tier
        self.credential = credential
        self._secrets = secrets
        self._service = service
        self._client = service.get_container_client(container)
        self.account = service.account_name or "?"
        parts = urlsplit(service.url)
        self.endpoint = urlunsplit((parts.scheme, parts.netloc, parts.path, "", ""))

    @classmethod
    def from_config(cls, target: TargetConfig) -> AzureStorage:
        """Options: container, prefix, endpoint (``https://ACCOUNT.blob.core.windows.net``),
        block_size (MiB, 8), tier, max_attempts (3); credentials: connection_string, or
        account_name plus account_key or sas_token. Raises ``ConfigError``."""
        container = target.require_str("container")
        attempts = target.get_int("max_attempts", 3)
        if attempts < 1:
            raise target.error("max_attempts", "must be at least 1")
        block_mib = target.get_int("block_size", 8)
        if not 1 <= block_mib <= 4000:
            raise target.error("block_size", "must be between 1 and 4000 (MiB)")
        kw: dict[str, Any] = {"retry_total": attempts - 1, "connection_timeout": 10,
                              "read_timeout": 60}
        conn = target.get_str("connection_string") or None
        account = target.get_str("account_name") or None
        key = target.get_str("account_key") or None
        sas = target.get_str("sas_token") or None
        endpoint = target.get_str("endpoint") or None
        secrets: tuple[str, ...]
        if conn:
            service = BlobServiceClient.from_connection_string(conn, **kw)
            used, secrets = "connection_string", (conn,)
        else:
            if account is None and endpoint is None:
                raise target.error("account_name", "set account_name (or endpoint, or "
                                   "connection_string)")
            url = endpoint or f"https://{account}.blob.core.windows.net"
            cred: Any = None
            used, secrets = "no credential (anonymous)", ()
            if key:
                if account is None:
                    raise target.error("account_name", "account_key needs account_name")
                cred = {"account_name": account, "account_key": key}
                used, secrets = "account_key", (key,)
            elif sas:
                cred = sas.lstrip("?")
                used, secrets = "sas_token", (cred,)
            service = BlobServiceClient(account_url=url, credential=cred, **kw)
        tier = target.get_str("tier") or None
        tiers = [t.value for t in StandardBlobTier]
        if tier is not None and tier not in tiers:
            raise target.error("tier", f"expected one of {', '.join(tiers)}, got {tier!r}")
        return cls(service, container, name=target.name, prefix=target.get_str("prefix") or "",
                   block_size=block_mib * MiB, tier=tier,
                   credential=used, secrets=secrets)

    def __repr__(self) -> str:
        return f"AzureStorage({self.describe()!r})"

    def describe(self) -> str:
        """``azure://account/container/prefix (endpoint)``; never a credential."""
        return f"azure://{self.account}/{self.container}/{self.prefix} ({self.endpoint})"

    def _full(self, key: str) -> str:
        return self._root + check_key(key)

    def _scrub(self, text: str) -> str:
        for s in self._secrets:
            text = text.replace(s, "***")
        return text

    def _error(self, op: str, blob: str, exc: BaseException) -> StorageError:
        """Translate an SDK error of ``op`` (list/read/write/commit/delete) on ``blob``."""
        where = f"target {self.name}: azure {op} of {self.container}/{blob} at {self.endpoint}"
        code = getattr(exc, "error_code", None) or ""
        status = getattr(exc, "status_code", None)
        if code == "ContainerNotFound":
            return StorageError(f"{where}: container {self.container!r} does not exist",
                                "create it (dbcrate never creates one) or fix `container`")
        if isinstance(exc, ResourceNotFoundError) or code == "BlobNotFound":
            return ObjectNotFound(f"no object {blob!r} in {self.describe()}",
                                  "run `dbcrate list` to see what exists")
        if isinstance(exc, ClientAuthenticationError) or code == "AuthenticationFailed" or (
                status in (401, 403) and "Permission" not in code):
            return StorageError(f"{where}: the {self.credential} was refused ({code or status})",
                                "check the credential (and that it has not expired)")
        if status == 403:
            return StorageError(
                f"{where}: denied ({code})",
                f"the SAS needs permission '{_SAS_PERMISSION.get(op, op)}' (or the role "
                f"Storage Blob Data Contributor) on container {self.container}")
        if isinstance(exc, ServiceRequestError | ServiceResponseError) or (
                status is not None and (status >= 500 or status in (408, 429))):
            return StorageUnavailable(f"{where} failed: {type(exc).__name__}",
                                      "check the network and the endpoint, then try again")
        message = getattr(exc, "reason", None) or type(exc).__name__
        return StorageError(f"{where} failed: {self._scrub(str(message))} {code}".rstrip())

    # -- Storage ---------------------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Stage ``chunks`` as blocks of ``block_size`` and commit them: atomic, nothing
        is visible before the commit; replaces an existing blob. If ``chunks`` raises,
        nothing is committed (the staged blocks are left to the service's garbage
        collection) and the same exception propagates. Raises ``StorageError``."""
        full = self._full(key)
        blob = self._client.get_blob_client(full)
        stem = uuid.uuid4().hex
        ids: list[BlobBlock] = []
        buf = bytearray()
        size = 0

        def stage() -> None:
            block_id = base64.b64encode(f"{stem}{len(ids):08d}".encode()).decode()
            try:
                blob.stage_block(block_id, bytes(buf))
            except AzureError as exc:
                raise self._error("write", full, exc) from None
            ids.append(BlobBlock(block_id))
            buf.clear()

        for chunk in chunks:
            buf += chunk
            size += len(chunk)
            while len(buf) >= self.block_size:
                rest = bytes(buf[self.block_size:])
                del buf[self.block_size:]
                stage()
                buf += rest
        if buf:
            stage()
        try:
            tier = StandardBlobTier(self.tier) if self.tier else None
            props = blob.commit_block_list(ids, standard_blob_tier=tier)
        except AzureError as exc:
            raise self._error("commit", full, exc) from None
        modified = props.get("last_modified")
        return ObjectInfo(key=key, size=size, modified=modified
                          if isinstance(modified, datetime) else datetime.now(UTC))

    def get(self, key: str, start: int | None = None, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes ``[start, end)`` of ``key`` (clamped to its size). Raises
        ``ObjectNotFound`` at once for a missing key, ``StorageError`` otherwise."""
        full = self._full(key)
        begin = start or 0
        if begin < 0 or (end is not None and end < begin):
            raise ValueError(f"invalid byte range [{start}, {end})")
        blob = self._client.get_blob_client(full)
        try:
            if end == begin:
                blob.get_blob_properties()
                return iter(())
            length = None if end is None else end - begin
            stream = blob.download_blob(offset=begin, length=length)
        except HttpResponseError as exc:
            if exc.status_code == 416:  # start beyond the end of the blob
                return iter(())
            raise self._error("read", full, exc) from None
        except AzureError as exc:
            raise self._error("read", full, exc) from None
        return self._stream(stream, full)

    def _stream(self, stream: Any, full: str) -> Iterator[bytes]:
        try:
            yield from stream.chunks()
        except AzureError as exc:
            raise self._error("read", full, exc) from None

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Committed blobs whose key starts with ``prefix``, in key order (the service
        lists in name order). Raises ``StorageError``."""
        check_prefix(prefix)
        full_prefix = self._root + prefix
        try:
            for b in self._client.list_blobs(name_starts_with=full_prefix or None):
                rel = b.name[len(self._root):]
                if rel and not rel.endswith("/"):
                    yield ObjectInfo(rel, b.size, b.last_modified)
        except AzureError as exc:
            raise self._error("list", full_prefix, exc) from None

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error. Raises ``StorageError``."""
        full = self._full(key)
        try:
            self._client.delete_blob(full)
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "ContainerNotFound":
                raise self._error("delete", full, exc) from None
        except AzureError as exc:
            raise self._error("delete", full, exc) from None

    def leftovers(self, prefix: str, older_than: timedelta, *, remove: bool = False) -> int:
        """Always 0: an interrupted upload leaves only uncommitted blocks, which are not
        listable as objects and which the service deletes after 7 days."""
        check_prefix(prefix)
        return 0

    def probe(self) -> None:
        """Write, read, list and delete a probe blob. Raises ``StorageError`` naming the
        step that failed."""
        run_probe(self)

    def settings(self) -> tuple[str | None, bool | None, builtins.list[str]]:
        """(versioning, object_lock, notes) for ``target check``: Azure's blob
        versioning and container immutability are account/management-plane settings
        the data-plane credential usually cannot read, so both are reported unknown
        unless the container says it has an immutability policy."""
        notes: builtins.list[str] = []
        lock: bool | None = None
        try:
            props = self._client.get_container_properties()
            immutable = getattr(props, "has_immutability_policy", None)
            legal = getattr(props, "has_legal_hold", None)
            if immutable is not None or legal is not None:
                lock = bool(immutable) or bool(legal)
        except AzureError as exc:
            notes.append(f"container properties unreadable: {self._error('list', '', exc)}")
        try:
            info = self._service.get_service_properties()
            delete = info.get("delete_retention_policy")
            if delete is not None and getattr(delete, "enabled", False):
                notes.append("soft delete is enabled: deleted blobs are kept "
                             f"{getattr(delete, 'days', '?')} days")
        except AzureError:
            notes.append("blob service properties (soft delete) are not readable with "
                         "this credential")
        notes.append("blob versioning is an account setting not visible to the data plane")
        return None, lock, notes
