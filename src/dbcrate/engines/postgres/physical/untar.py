"""Writing a base backup's tar stream (``pg_basebackup -Ft``) into a data directory as it
is decoded: headers are parsed here, file data goes from the decoded chunks straight to
``os.write``. ``tarfile`` copied every byte twice through small buffers and cost about
2.5x what ``tar -x`` does for 1 GB (docs/pitr.md, "Performance").

Only what PostgreSQL writes is accepted: ustar (or GNU) headers with a valid checksum,
regular files and directories, each relative and inside the data directory. Anything
else (a link, a device, a pax or GNU long-name header, an absolute name, ``..``) raises
``RestoreFailed`` before it is written. Modes keep their permission bits only; the
owner is the caller's to set.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from dbcrate.errors import RestoreFailed

BLOCK = 512
_FILE_TYPES = (b"0", b"\0", b"7")
_DIR_TYPE = b"5"
_OPEN_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC


def _number(field: bytes) -> int:
    """A tar number: octal text, or GNU base-256 (high bit set). Raises ``ValueError``."""
    if field and field[0] & 0x80:
        return int.from_bytes(bytes([field[0] & 0x7F]) + field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _checksum_ok(header: bytes) -> bool:
    try:
        stored = _number(header[148:156])
    except ValueError:
        return False
    return stored == sum(header[:148]) + 8 * 0x20 + sum(header[156:])


class Untar:
    """A tar stream's writer into ``dest`` (which exists): ``feed`` every chunk, then
    ``finish``. Not atomic: a failure leaves what was written (the caller empties the
    directory); ``close`` releases the open file whatever happened."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.members = 0
        self._header = bytearray()
        self._fd = -1
        self._name = ""
        self._left = 0  # data bytes of the current file still to come
        self._pad = 0  # padding after them
        self._mode = 0
        self._mtime = 0
        self._fed = 0  # bytes of the stream before the current chunk
        self._ended = False

    def feed(self, chunk: bytes) -> None:
        """Write what ``chunk`` holds. Raises ``RestoreFailed`` (a member a restore does
        not write, a damaged header, a file that cannot be written)."""
        try:
            self._feed(chunk)
        except OSError as exc:
            raise RestoreFailed(f"cannot write {self.dest / self._name}: "
                                f"{exc.strerror or exc}",
                                hint="is the file system full, or not the data "
                                "directory's owner's?") from None
        self._fed += len(chunk)

    def _feed(self, chunk: bytes) -> None:
        view = memoryview(chunk)
        pos, size = 0, len(view)
        while pos < size and not self._ended:
            if self._left:
                n = min(self._left, size - pos)
                written = os.write(self._fd, view[pos:pos + n])
                pos += written
                self._left -= written
                if not self._left:
                    self._close_file()
            elif self._pad:
                n = min(self._pad, size - pos)
                pos += n
                self._pad -= n
            else:
                n = min(BLOCK - len(self._header), size - pos)
                self._header += view[pos:pos + n]
                pos += n
                if len(self._header) == BLOCK:
                    header = bytes(self._header)
                    self._header.clear()
                    self._start(header, self._fed + pos - BLOCK)

    def finish(self) -> int:
        """The stream ended: check it ended between members; the number of members.
        Raises ``RestoreFailed``."""
        if self._left or self._fd >= 0 or (self._header and not self._ended):
            raise RestoreFailed(f"the base backup's tar ends inside {self._name or 'a header'}")
        return self.members

    def close(self) -> None:
        """Close the file being written, if any. Idempotent."""
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    # -- members ---------------------------------------------------------------------

    def _start(self, header: bytes, offset: int) -> None:
        if not any(header):
            self._ended = True  # the end-of-archive blocks; what follows is padding
            return
        if not _checksum_ok(header):
            raise RestoreFailed(f"the base backup's tar has a damaged header near byte "
                                f"{offset}", hint="the stored object passed its "
                                "digest check: was it written by dbcrate?")
        name = header[:100].split(b"\0", 1)[0]
        if header[257:263] == b"ustar\0" and header[345]:  # POSIX: a name prefix
            name = header[345:500].split(b"\0", 1)[0] + b"/" + name
        text = name.decode("utf-8", "surrogateescape")
        kind = header[156:157]
        parts = [p for p in text.split("/") if p not in ("", ".")]
        if kind == _DIR_TYPE and not parts and not text.startswith("/"):
            self.members += 1  # the data directory itself
            return
        if text.startswith("/") or ".." in parts or not parts or \
                kind not in (*_FILE_TYPES, _DIR_TYPE):
            raise RestoreFailed(f"the base backup holds {text!r}, which a restore does not "
                                "write", hint="is it a base of dbcrate's? (extra tablespaces "
                                "are refused)")
        try:
            size, mode, mtime = (_number(header[124:136]), _number(header[100:108]),
                                 _number(header[136:148]))
        except ValueError:
            raise RestoreFailed(f"the base backup's tar header of {text!r} is damaged") \
                from None
        path = self.dest.joinpath(*parts)
        self._name = "/".join(parts)
        self.members += 1
        if kind == _DIR_TYPE:
            path.mkdir(mode=mode & 0o777 or 0o700, parents=True, exist_ok=True)
            self._pad = 0
            return
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._mode, self._mtime = mode & 0o777, mtime
        self._fd = os.open(path, _OPEN_FLAGS, 0o600)
        self._left, self._pad = size, (-size) % BLOCK
        if not size:
            self._close_file()

    def _close_file(self) -> None:
        fd = self._fd
        os.fchmod(fd, self._mode or 0o600)
        os.utime(fd, (self._mtime, self._mtime))
        self.close()


def unpack(chunks: Iterable[bytes], dest: Path) -> int:
    """Write the tar stream ``chunks`` into ``dest``, reading it to its end (past the
    end-of-archive blocks, so a decoder's checks at the end always run). The number of
    members. Raises ``RestoreFailed``, ``OSError`` and what ``chunks`` raises."""
    untar = Untar(dest)
    try:
        for chunk in chunks:
            untar.feed(chunk)
        return untar.finish()
    finally:
        untar.close()
