"""A directory on an SSH server, over SFTP (asyncssh), as a storage target.

Objects are files under ``path`` (absolute; created 0700 with its missing parents); a
key's ``/`` separators are directories. Uploads write ``.dbcrate-tmp-<pid>-<hex>`` beside
the final name (0600), ``fsync`` it (the ``fsync@openssh.com`` extension) and
``posix-rename@openssh.com`` it into place, so a cut connection leaves either the old
object or the new one, plus at worst a temp file that is never listed and that
``leftovers`` removes later. Only this module (and ``sftp_session``) imports asyncssh.
"""

from __future__ import annotations

import logging
import os
import posixpath
import stat
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncssh

from dbcrate import interrupt
from dbcrate.config import TargetConfig
from dbcrate.errors import ObjectNotFound, StorageError, StorageUnavailable
from dbcrate.model import ObjectInfo
from dbcrate.private_files import pid_alive
from dbcrate.storage.base import PROBE_PREFIX, TMP_PREFIX, check_key, check_prefix, run_probe
from dbcrate.storage.sftp_session import SftpSession, SshParams

# the SDK logs connection details (user names, URLs, headers) at INFO/DEBUG; dbcrate's own
# messages say what matters, so `-v` never shows the SDK's (secrets stay out of logs)
for _name in ("asyncssh",):
    logging.getLogger(_name).setLevel(logging.WARNING)

READ_CHUNK = 256 * 1024
FILE_MODE = 0o600
DIR_MODE = 0o700


class SftpStorage:
    """A storage target in a directory on an SFTP server. See the module docstring."""

    def __init__(self, params: SshParams, path: str, *, name: str = "sftp") -> None:
        if not path.startswith("/"):
            raise ValueError("path must be absolute")
        self.name = name
        self.params = params
        self.root = posixpath.normpath(path)
        self.session = SftpSession(params)

    @classmethod
    def from_config(cls, target: TargetConfig) -> SftpStorage:
        """Options: host, port (22), user, path (absolute), private_key_file,
        private_key_passphrase, password, connect_timeout (s, 10), known_hosts_file
        (~/.ssh/known_hosts) or host_key_fingerprint (SHA256:...). Raises ``ConfigError``."""
        path = target.require_str("path")
        if not path.startswith("/"):
            raise target.error("path", f"must be an absolute path on the server, got {path!r}")
        port = target.get_int("port", 22)
        if not 0 < port < 65536:
            raise target.error("port", f"expected a TCP port, got {port}")
        fingerprint = target.get_str("host_key_fingerprint") or None
        if fingerprint is not None and not fingerprint.startswith("SHA256:"):
            raise target.error("host_key_fingerprint", "expected SHA256:... as printed by "
                               "`ssh-keygen -lf KEY.pub` or `ssh-keyscan HOST | ssh-keygen -lf -`")
        timeout = target.options.get("connect_timeout", 10)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise target.error("connect_timeout", f"expected a positive number of seconds, "
                               f"got {timeout!r}")
        attempts = target.get_int("max_attempts", 3)
        if attempts < 1:
            raise target.error("max_attempts", "must be at least 1")
        params = SshParams(
            target=target.name, host=target.require_str("host"), port=port,
            user=target.require_str("user"),
            known_hosts_file=target.get_str("known_hosts_file") or "~/.ssh/known_hosts",
            host_key_fingerprint=fingerprint,
            private_key_file=target.get_str("private_key_file") or None,
            passphrase=target.get_str("private_key_passphrase") or None,
            password=target.get_str("password") or None,
            connect_timeout=float(timeout), attempts=attempts,
        )
        return cls(params, path, name=target.name)

    def __repr__(self) -> str:
        return f"SftpStorage({self.describe()!r})"

    def describe(self) -> str:
        """``sftp://user@host:port/path``; never a password."""
        return f"sftp://{self.params.user}@{self.params.where}{self.root}"

    # -- helpers ---------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return posixpath.join(self.root, check_key(key))

    def _error(self, action: str, path: str, exc: BaseException) -> StorageError:
        where = f"target {self.name}: cannot {action} {path} on {self.params.where}"
        if isinstance(exc, asyncssh.SFTPPermissionDenied):
            return StorageError(f"{where}: permission denied",
                                f"give user {self.params.user} write on path {self.root}")
        if isinstance(exc, asyncssh.SFTPNoSpaceOnFilesystem | asyncssh.SFTPQuotaExceeded):
            return StorageError(f"{where}: no space left", f"free space under {self.root}")
        if isinstance(exc, StorageError):
            return exc
        if isinstance(exc, OSError | asyncssh.Error | EOFError):
            self.session.forget()
            reason = getattr(exc, "reason", "") or str(exc) or type(exc).__name__
            if isinstance(exc, asyncssh.SFTPError) and not isinstance(
                    exc, asyncssh.SFTPConnectionLost):
                return StorageError(f"{where}: {reason}",
                                    f"check path {self.root} on the server")
            return StorageUnavailable(f"{where}: connection lost ({reason})",
                                      "check the network and the SSH server, then try again")
        return StorageError(f"{where}: {type(exc).__name__}: {exc}")

    def _run(self, action: str, path: str, fn: Any) -> Any:
        """Run ``fn(sftp)`` (a coroutine factory) on the session, mapping errors."""
        sftp = self.session.sftp()
        try:
            return self.session.run(fn(sftp))
        except (OSError, asyncssh.Error, EOFError) as exc:
            raise self._error(action, path, exc) from None

    # -- Storage ---------------------------------------------------------------------

    def put(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Write ``chunks`` to ``key``: temp file (0600), fsync, posix-rename. Atomic;
        replaces an existing object. If ``chunks`` raises, the temp file is removed
        (best effort: a lost connection leaves it for ``leftovers``) and the same
        exception propagates. Raises ``StorageError``."""
        final = self._path(key)
        parent = posixpath.dirname(final)
        tmp = posixpath.join(parent, f"{TMP_PREFIX}{os.getpid()}-{uuid.uuid4().hex}")
        attrs = asyncssh.SFTPAttrs(permissions=DIR_MODE)
        self._run("create directory", parent,
                  lambda s: s.makedirs(parent, attrs=attrs, exist_ok=True))
        fattrs = asyncssh.SFTPAttrs(permissions=FILE_MODE)
        f = self._run("create", tmp, lambda s: s.open(tmp, "wb", fattrs))
        size = 0
        try:
            try:
                for chunk in chunks:
                    if chunk:
                        self._run("write", tmp, lambda _s, c=chunk, o=size: f.write(c, o))
                        size += len(chunk)
                self._run("fsync", tmp, lambda _s: f.fsync())
            finally:
                try:
                    self.session.run(f.close())
                except (OSError, asyncssh.Error, EOFError):
                    pass
            self._run("rename into place", final, lambda s: s.posix_rename(tmp, final))
        except BaseException:
            try:
                self._run("remove", tmp, lambda s: s.remove(tmp))
            except StorageError:
                pass
            interrupt.note_removed(f"partial upload to target {self.name}")
            raise
        st = self._run("stat", final, lambda s: s.stat(final))
        return ObjectInfo(key=key, size=size, modified=_mtime(st))

    def get(self, key: str, start: int | None = None, end: int | None = None) -> Iterator[bytes]:
        """Stream bytes ``[start, end)`` of ``key`` (clamped to its size). Raises
        ``ObjectNotFound`` at once for a missing key, ``StorageError`` otherwise."""
        path = self._path(key)
        begin = start or 0
        if begin < 0 or (end is not None and end < begin):
            raise ValueError(f"invalid byte range [{start}, {end})")
        async def open_(s: asyncssh.SFTPClient) -> Any:
            try:
                return await s.open(path, "rb")
            except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPFailure):
                # OpenSSH answers "failure" for a path below a regular file
                if await s.exists(path):
                    raise
                return None

        f = self._run("open", path, open_)
        if f is None:
            raise ObjectNotFound(f"no object {key!r} in {self.describe()}",
                                 hint="run `dbcrate list` to see what exists")
        return self._read(f, path, begin, end)

    def _read(self, f: Any, path: str, begin: int, end: int | None) -> Iterator[bytes]:
        offset = begin
        try:
            while end is None or offset < end:
                want = READ_CHUNK if end is None else min(READ_CHUNK, end - offset)
                data = self._run("read", path, lambda _s, w=want, o=offset: f.read(w, o))
                if not data:
                    return
                offset += len(data)
                yield data
        finally:
            try:
                self.session.run(f.close())
            except (OSError, asyncssh.Error, EOFError):
                pass

    def _walk(self, base: str, prefix: str, temps: bool) -> list[tuple[str, Any]]:
        """(path, attrs) of the regular files under ``base`` whose key starts with
        ``prefix`` (temp files only if ``temps``, else never them)."""
        async def walk(s: asyncssh.SFTPClient) -> list[tuple[str, Any]]:
            found: list[tuple[str, Any]] = []
            todo = [base]
            while todo:
                d = todo.pop()
                try:
                    names = await s.readdir(d)
                except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPFailure):
                    continue
                for n in names:
                    fn = str(n.filename)
                    if fn in (".", ".."):
                        continue
                    full = posixpath.join(d, fn)
                    rel = full[len(self.root) + 1:]
                    mode = n.attrs.permissions or 0
                    if stat.S_ISDIR(mode):
                        if (rel + "/").startswith(prefix) or prefix.startswith(rel + "/"):
                            todo.append(full)
                    elif stat.S_ISREG(mode) and fn.startswith(TMP_PREFIX) == temps and (
                            temps or rel.startswith(prefix)):
                        found.append((rel, n.attrs))
            return found

        return self._run("list", base, walk)  # type: ignore[no-any-return]

    def _base(self, prefix: str) -> str:
        check_prefix(prefix)
        head, _, _ = prefix.rpartition("/")
        return posixpath.join(self.root, head) if head else self.root

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """Objects whose key starts with ``prefix``, in key order; temp files skipped.
        Raises ``StorageError``."""
        found = self._walk(self._base(prefix), prefix, temps=False)
        return iter(sorted((ObjectInfo(rel, a.size or 0, _mtime(a)) for rel, a in found),
                           key=lambda o: o.key))

    def delete(self, key: str) -> None:
        """Remove ``key``; a missing key is not an error. Raises ``StorageError``."""
        path = self._path(key)

        async def remove(s: asyncssh.SFTPClient) -> None:
            try:
                await s.remove(path)
            except (asyncssh.SFTPNoSuchFile, asyncssh.SFTPFailure):
                # OpenSSH answers "failure" for a path below a regular file
                if await s.exists(path):
                    raise
            if key.startswith(PROBE_PREFIX):
                try:
                    await s.rmdir(posixpath.dirname(path))
                except asyncssh.SFTPError:
                    pass

        self._run("delete", path, remove)

    def leftovers(self, prefix: str, older_than: timedelta, *, remove: bool = False) -> int:
        """Count (and with ``remove`` delete) temp files of interrupted uploads under
        ``prefix`` not modified for ``older_than``; one named after a live process on
        this host is skipped. Raises ``StorageError``."""
        cutoff = datetime.now(UTC) - older_than
        count = 0
        for rel, attrs in self._walk(self._base(prefix), prefix, temps=True):
            name = posixpath.basename(rel)
            pid = name[len(TMP_PREFIX):].partition("-")[0]
            if (pid.isdigit() and pid_alive(int(pid))) or _mtime(attrs) > cutoff:
                continue
            if remove:
                full = posixpath.join(self.root, rel)

                async def rm(s: asyncssh.SFTPClient, p: str = full) -> None:
                    try:
                        await s.remove(p)
                    except asyncssh.SFTPNoSuchFile:
                        pass

                self._run("remove", full, rm)
            count += 1
        return count

    def connect(self) -> None:
        """Log in only (host key, credentials). Raises ``StorageError``."""
        self.session.connect_check()

    def probe(self) -> None:
        """Write, read, list and delete a probe object. Raises ``StorageError`` naming
        the step that failed."""
        run_probe(self)

    def close(self) -> None:
        """Close the connection."""
        self.session.close()


def _mtime(attrs: Any) -> datetime:
    return datetime.fromtimestamp(attrs.mtime or 0, UTC)
