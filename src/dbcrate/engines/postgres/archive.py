"""Counting rows as a ``pg_dump -Fc -Z0`` archive streams past (docs/verify.md, "Counts at
backup time"): no second pass over the database, no copy of the data.

The custom format (pg_backup_archiver.c, pg_backup_custom.c): a header, the table of
contents (one entry per object; ``TABLE DATA`` entries name schema and table), then data
blocks. A block is a type byte and a dump id, then length-prefixed chunks ending with a
zero length (``BLK_DATA``: the COPY text of one table, ended by ``\\.``; ``BLK_BLOBS``:
large objects, each an oid and its chunks, ended by oid 0). With ``-Z0`` the chunks are
the plain bytes, and pg_dump writes one chunk per COPY row (and one for the terminator),
so the rows of a table are its chunks less the terminator, counted by reading each
chunk's length and jumping over its data: in C (``_chunkwalk.c``, a few instructions per
row, a call per buffer) where that extension was built, else in Python, for narrow rows a
buffer at a time with a few C-level scans (``copycount``), for wide ones one ``struct``
read per row. ``NATIVE_WALK`` is the one place that choice is made.

``RowCounter`` is a pass-through stage; ``counts()`` is valid after the stream ended.
"""

from __future__ import annotations

import json
import struct
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

from dbcrate.engines.postgres.copycount import TERMINATOR, complete_end, count_chunks, uniform

_BLK_DATA, _BLK_BLOBS = 1, 3
#: a chunk's length after its sign byte (4-byte ints; the sign of a length is always 0)
_LEN = struct.Struct("<xI")
#: rows shorter than this on average (bytes) are counted a buffer at a time: a few
#: C-level scans per byte cost less than a Python step per row (callgrind: ~6
#: instructions per byte per scan, ~2000 per row for the walk)
_DENSE = 100
#: rows of one length are checked at once, 2, 4, ... up to _RUN at a time while that
#: holds; after a miss single steps come first, _WAIT of them, twice as many after each
#: further miss (up to _RUN): rows of varying length cost a try per ~_RUN rows
_RUN, _WAIT = 1024, 16
#: COPY's end marker, a chunk of its own after the rows (4-byte ints)
_LAST_CHUNK = b"\x00\x05\x00\x00\x00\\.\n\n\n"
#: a field cut by the end of a buffer is completed from this many bytes of the next one
#: rather than by a copy of all of it (on the C path a cut field is a header: <= 10 bytes)
_JOIN = 64

#: ``(data, pos, left) -> (pos, count, left, at_header)``: the chunks of a data block
#: counted and skipped from ``pos`` (after ``left`` bytes of one begun earlier) up to its
#: terminator, a header cut by the buffer's end or the buffer's end (``_chunkwalk.c``)
Walk = Callable[[bytes, int, int], tuple[int, int, int, bool]]


def _native_walk() -> Walk | None:
    """The C chunk walk if the extension was built (setup.py; optional), else None."""
    try:
        from dbcrate.engines.postgres._chunkwalk import walk
    except ImportError:
        return None
    return walk


#: the chunk walk in C, or None where it was not built (the Python path counts instead)
NATIVE_WALK = _native_walk()


class ArchiveFormatError(ValueError):
    """The stream is not a custom-format archive this counter understands."""


class _NeedMore(Exception):
    pass


class _Reader:
    """Reads archive fields from a buffer; raises ``_NeedMore`` at its end."""

    def __init__(self, buf: bytes | bytearray, pos: int = 0, int_size: int = 4) -> None:
        self.buf, self.pos, self.int_size = buf, pos, int_size

    def byte(self) -> int:
        if self.pos >= len(self.buf):
            raise _NeedMore
        self.pos += 1
        return self.buf[self.pos - 1]

    def raw(self, n: int) -> bytes:
        if self.pos + n > len(self.buf):
            raise _NeedMore
        self.pos += n
        return bytes(self.buf[self.pos - n : self.pos])

    def int(self) -> int:
        sign = self.byte()
        value = int.from_bytes(self.raw(self.int_size), "little")
        return -value if sign else value

    def str(self) -> str | None:
        n = self.int()
        if n < 0:
            return None
        return self.raw(n).decode("utf-8", "replace")


@dataclass
class Header:
    version: tuple[int, int, int]
    int_size: int
    off_size: int
    #: dump id -> (schema, table) of each TABLE DATA entry
    tables: dict[int, tuple[str, str]]


def read_header(buf: bytes | bytearray) -> tuple[Header, int]:
    """Parse header and TOC; returns them and the offset of the first data block.
    Raises ``_NeedMore`` if ``buf`` is too short, ``ArchiveFormatError`` if not ours."""
    r = _Reader(buf)
    if r.raw(5) != b"PGDMP":
        raise ArchiveFormatError("not a pg_dump custom-format archive")
    version = (r.byte(), r.byte(), r.byte())
    if version < (1, 12, 0) or version >= (2, 0, 0):
        raise ArchiveFormatError(f"unsupported archive version {version}")
    int_size, off_size = r.byte(), r.byte()
    r.int_size = int_size
    if r.byte() != 1:
        raise ArchiveFormatError("not a custom-format archive")
    if version >= (1, 15, 0):
        if r.byte() != 0:
            raise ArchiveFormatError("a compressed archive (rows are counted only for -Z0)")
    elif r.int() != 0:
        raise ArchiveFormatError("a compressed archive (rows are counted only for -Z0)")
    for _ in range(7):  # creation time
        r.int()
    for _ in range(3):  # database, server version, pg_dump version
        r.str()
    tables: dict[int, tuple[str, str]] = {}
    for _ in range(r.int()):
        dump_id = r.int()
        r.int()  # has data
        r.str(), r.str()  # table oid, oid
        tag, desc = r.str(), r.str()
        r.int()  # section
        r.str(), r.str(), r.str()  # defn, drop, copy statements
        namespace = r.str()
        r.str()  # tablespace
        if version >= (1, 14, 0):
            r.str()  # table access method
        if version >= (1, 16, 0):
            r.int()  # relkind
        r.str(), r.str()  # owner, "false"
        while r.str() is not None:  # dependencies
            pass
        r.byte()  # offset flag
        r.raw(off_size)
        if desc == "TABLE DATA" and tag is not None:
            tables[dump_id] = (namespace or "", tag)
    return Header(version, int_size, off_size, tables), r.pos


class RowCounter:
    """A pass-through ``Stage``: yields every chunk unchanged and counts, per table, the
    COPY rows (and the large objects) of the archive flowing through it.

    ``native=False`` counts with the Python path even where the C walk is built (tests
    compare the two)."""

    def __init__(self, *, native: bool = True) -> None:
        self._walk = NATIVE_WALK if native else None
        self.header: Header | None = None
        self.rows: dict[int, int] = {}
        self.large_objects = 0
        #: why counting stopped (an archive this counter cannot read), else None
        self.problem: str | None = None
        #: CPU time spent counting (the bench reports its share of the backup's)
        self.cpu_seconds = 0.0
        self._buf = bytearray()
        self._state = "head"
        self._left = 0  # bytes of the current chunk still to come
        self._block = 0  # dump id of the current data block
        self._kind = 0
        self._prev = b""  # the last bytes consumed before the current buffer
        self._origin = 0  # where in the current buffer the current scan began
        self._dense = False  # the rows of the last buffer were narrow (see _DENSE)
        self._wait, self._most, self._backoff = 0, 2, _WAIT  # equal-length runs (_RUN)

    def __call__(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Pass ``chunks`` through, counting; an archive it cannot read stops the counting
        (``problem`` says why) but never the stream."""
        for chunk in chunks:
            if self.problem is None:
                t0 = time.thread_time()
                try:
                    self.feed(chunk)
                except ArchiveFormatError as e:
                    self.problem = str(e)
                self.cpu_seconds += time.thread_time() - t0
            yield chunk

    def stats(self) -> bytes | None:
        """The ``stats`` part (JSON): rows per table and large objects, or None if the
        archive could not be read to its end. Holds names and counts, no values."""
        if self.problem is not None or self.header is None or self._state != "block":
            return None
        tables = [{"schema": s, "table": t, "rows": n}
                  for (s, t), n in sorted(self.counts().items())]
        body = {"format": 1, "method": "copy-stream", "tables": tables,
                "large_objects": self.large_objects}
        return json.dumps(body, sort_keys=True).encode()

    def feed(self, chunk: bytes) -> None:
        """Count what ``chunk`` holds. Raises ``ArchiveFormatError``."""
        if self._state == "head":
            # the header and TOC, mostly all in the first buffer: read there, not copied
            first = not self._buf
            if not first:
                self._buf += chunk
            try:
                self.header, pos = read_header(chunk if first else self._buf)
            except _NeedMore:
                if first:
                    self._buf += chunk
                return
            data = chunk if first else bytes(self._buf)
            self._buf = bytearray()
            self._state = "block"
            self._blocks(data, pos)
        else:
            self._blocks(chunk)

    def _blocks(self, data: bytes, start: int = 0) -> None:
        """Count ``data`` from ``start`` (0 whenever the last buffer left a carry)."""
        if self._buf:  # the start of a field the last buffer cut
            carry, self._buf = bytes(self._buf), bytearray()
            if self._walk is not None and len(carry) < _JOIN <= len(data):
                # completed from the head of this buffer, which then goes on from where
                # that left off: no copy of the buffer (the Python path's carry can be a
                # whole chunk, so it keeps the plain join)
                head = carry + data[:_JOIN]
                pos = self._consume(head, 0)
                if pos >= len(carry):
                    start = pos - len(carry)
                else:  # a field longer than _JOIN: not the C path's
                    data = head[pos:] + data[_JOIN:]
            else:
                data = carry + data
        pos = self._consume(data, start)
        if pos < len(data):
            self._buf = bytearray(data[pos:])

    def _consume(self, data: bytes, start: int) -> int:
        """Scan ``data`` from ``start``; returns where its first incomplete field starts."""
        pos = self._scan(data, start)
        self._prev = (self._prev + data[max(start, pos - 16) : pos])[-16:]
        return pos

    def _scan(self, data: bytes, pos: int) -> int:
        """Consume ``data`` from ``pos`` up to the first incomplete field; returns where
        that starts."""
        assert self.header is not None
        self._origin, n = pos, len(data)
        r = _Reader(data, 0, self.header.int_size)
        fast = self.header.int_size == 4
        unpack = _LEN.unpack_from
        walk = self._walk if fast else None
        while pos < n:
            if walk is not None and self._state == "chunk" and self._kind == _BLK_DATA:
                # in C, up to the terminator (or a negative length) for _field to read
                pos, count, self._left, at_header = walk(data, pos, self._left)
                self.rows[self._block] += count
                if not at_header:  # the end of data, or a header it cuts
                    return pos
            elif self._left:  # the rest of a chunk that began in an earlier buffer
                take = min(self._left, n - pos)
                self._left -= take
                pos += take
                continue
            elif fast and self._state == "chunk" and self._kind == _BLK_DATA and self._dense:
                # narrow rows: whole chunks counted a buffer at a time (C-level scans) up
                # to the block's terminator or the chunk cut by the buffer's end
                term = data.find(TERMINATOR, pos)
                stop = term if term >= 0 else complete_end(data, pos, n)
                count = count_chunks(data, pos, stop)
                self.rows[self._block] += count
                self._dense = count * _DENSE > stop - pos
                pos = stop
                if pos >= n:
                    return pos
            elif fast and self._state == "chunk" and self._kind == _BLK_DATA:
                start, count = pos, 0  # wide rows: a length read per row
                wait, most = self._wait, self._most
                while pos + 5 <= n:
                    (length,) = unpack(data, pos)
                    if not length:
                        break
                    if wait:
                        wait -= 1
                    else:  # a run of rows of one length is checked by its headers at once
                        run = uniform(data, pos, n, 5 + length, most)
                        if run:  # the next try takes twice as many, the next miss waits less
                            count += run
                            pos += run * (5 + length)
                            most, self._backoff = min(2 * most, _RUN), _WAIT
                            continue
                        most, self._backoff = 2, min(2 * self._backoff, _RUN)
                        wait = self._backoff
                    count += 1
                    pos += 5 + length
                self._wait, self._most = wait, most
                self._dense = count * _DENSE > min(pos, n) - start
                if pos > n:
                    self._left, pos = pos - n, n
                self.rows[self._block] += count
                if pos + 5 > n:
                    return pos if not self._left else n
            r.pos = pos
            try:
                pos = self._field(r)
            except _NeedMore:
                return pos
        return pos

    def _field(self, r: _Reader) -> int:
        """Read the next non-data field at ``r.pos``; returns the position after it."""
        start = r.pos
        if self._state == "block":
            kind = r.byte()
            self._kind, self._block = kind, r.int()
            if kind == _BLK_DATA:
                self.rows.setdefault(self._block, 0)
                self._state = "chunk"
            elif kind == _BLK_BLOBS:
                self._state = "oid"
            else:
                raise ArchiveFormatError(f"unknown data block type {kind}")
        elif self._state == "oid":
            if r.int() == 0:
                self._state = "block"
            else:
                self.large_objects += 1
                self._state = "chunk"
        else:  # chunk length
            length = r.int()
            if length < 0:
                raise ArchiveFormatError("negative chunk length")
            if length:
                self._left = length
                if self._kind == _BLK_DATA:
                    self.rows[self._block] += 1
            elif self._kind == _BLK_DATA:
                tail = bytes(r.buf[max(self._origin, start - 16) : start])
                before = (self._prev + tail)[-10:]
                if before == _LAST_CHUNK:  # COPY's end marker is not a row
                    self.rows[self._block] -= 1
                self._state = "block"
            else:
                self._state = "oid"
        return r.pos

    def counts(self) -> dict[tuple[str, str], int]:
        """Rows per (schema, table) of every table whose data the archive held."""
        if self.header is None:
            return {}
        tables = self.header.tables
        return {tables[i]: n for i, n in self.rows.items() if i in tables}
