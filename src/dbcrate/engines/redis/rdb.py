"""RDB stream checks and atomic RDB files.

``checked_rdb`` passes an RDB stream through, checking that it starts with the ``REDIS``
magic and a version, and ends with the EOF opcode ``0xFF`` and its 8-byte checksum. Some
redis-cli versions (7.0) append the 40-byte diskless-transfer EOF mark to ``--rdb -``
output; it is recognised and dropped, so what is stored is exactly the RDB file.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

from dbcrate.errors import DumpFailed, RestoreFailed

_MAGIC = b"REDIS"
_HEADER = 9  # "REDIS" + 4 version digits
_EOF_OPCODE = 0xFF
_CHECKSUM = 8
_MARK = 40  # the diskless EOF mark: 40 hex characters
_HOLD = 1 + _CHECKSUM + _MARK
_HEX = frozenset(b"0123456789abcdef")


def checked_rdb(chunks: Iterable[bytes], what: str = "redis-cli") -> Iterator[bytes]:
    """Yield ``chunks`` minus a trailing diskless EOF mark. Raises ``DumpFailed`` (after
    the source's own errors) if the stream is not a complete RDB file: bad magic, or no
    EOF opcode + checksum at the end (a truncated snapshot)."""
    held = b""
    header_ok = False
    for chunk in chunks:
        if not chunk:
            continue
        held += chunk
        if not header_ok and len(held) >= _HEADER:
            if held[:5] != _MAGIC or not held[5:_HEADER].isdigit():
                raise DumpFailed(
                    f"{what} did not produce an RDB snapshot (no REDIS header)",
                    hint="check that the server is Redis (or compatible) and supports SYNC",
                )
            header_ok = True
        if len(held) > _HOLD:
            out, held = held[:-_HOLD], held[-_HOLD:]
            yield out
    if not header_ok:
        raise DumpFailed(f"{what} produced {len(held)} bytes, not an RDB snapshot (truncated)")
    if len(held) >= _HOLD and held[-_HOLD] == _EOF_OPCODE and _is_mark(held[-_MARK:]):
        held = held[:-_MARK]
    elif len(held) < _HEADER + 1 + _CHECKSUM or held[-1 - _CHECKSUM] != _EOF_OPCODE:
        raise DumpFailed(
            f"the RDB snapshot from {what} is truncated (no EOF opcode and checksum at the end)",
            hint="the transfer was cut short; run the backup again; no backup was recorded",
        )
    yield held


def _is_mark(data: bytes) -> bool:
    return len(data) == _MARK and all(b in _HEX for b in data)


def looks_like_rdb(head: bytes) -> bool:
    return head[:5] == _MAGIC and head[5:_HEADER].isdigit()


def write_atomically(chunks: Iterable[bytes], dest: Path, *, like: Path | None = None) -> int:
    """Write ``chunks`` to ``dest`` atomically: a temp file beside it (mode 0600, or the
    mode and owner of ``like``/an existing ``dest`` when we may), fsync, rename, fsync of
    the directory. Returns the size. If ``chunks`` raises or the disk fails, the temp file
    is removed, ``dest`` is untouched and the error propagates (``OSError`` for the disk)."""
    tmp = stage(chunks, dest)
    try:
        commit(tmp, dest, like=like)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return dest.stat().st_size


def stage(chunks: Iterable[bytes], dest: Path) -> Path:
    """Write ``chunks`` to a fsynced temp file beside ``dest`` and return its path (not
    yet renamed: see ``commit``). On failure nothing is left behind."""
    tmp = dest.with_name(f".{dest.name}.dbcrate-{uuid.uuid4().hex[:12]}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            first = True
            for chunk in chunks:
                if first and chunk:
                    if not looks_like_rdb(bytes(chunk[:_HEADER])):
                        raise RestoreFailed(
                            "the backup is not an RDB snapshot; nothing was changed"
                        )
                    first = False
                f.write(chunk)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def commit(tmp: Path, dest: Path, *, like: Path | None = None) -> None:
    """Give ``tmp`` the mode/owner of ``like`` (or of an existing ``dest``, else of the
    directory's owner with mode 0640 when we are root), rename it over ``dest`` and fsync
    the directory. Raises ``OSError``."""
    ref = like if like is not None and like.exists() else dest if dest.exists() else None
    if ref is not None:
        st = ref.stat()
        tmp.chmod(st.st_mode & 0o777)
    else:
        st = dest.parent.stat()
        tmp.chmod(0o640 if os.geteuid() == 0 and st.st_uid != 0 else 0o600)
    if os.geteuid() == 0:
        os.chown(tmp, st.st_uid, st.st_gid)
    tmp.replace(dest)
    dfd = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
