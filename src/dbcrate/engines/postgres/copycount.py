"""Counting the chunks of a ``pg_dump -Fc -Z0`` data block with a few C-level scans per
buffer instead of a Python step per row (``RowCounter``'s hot path for narrow rows), and
runs of equal-length rows (its path for wide ones) with a strided slice per header byte.

A data block is a run of chunks ``00 a b c d`` + ``D``: a sign byte (always 0), the
length ``L`` in four little-endian bytes, then ``L`` bytes of COPY text. pg_dump writes
one chunk per row (and one for COPY's ``\\.`` marker), so counting chunks counts rows.
Two facts about COPY text make the chunks countable without walking them one by one:
``D`` never holds a 0 byte (text cannot, bytea is escaped) and it ends with ``\\n``.
Hence every chunk but the last is followed by a ``00`` sign, and for chunks shorter than
64 KiB (``c = d = 0``) the patterns below occur exactly where this says, in a region of
whole chunks followed by one ``00`` (the next sign or the terminator's):

- ``0a 00``: once per chunk (its last byte, the next sign), plus once inside each
  header with ``L = 10`` (``a b``) and each with ``b = 0a`` (``b c``);
- ``0a 00 00``: once per header with ``L = 10``, once per header with ``b = 0a``, and
  once per chunk with ``a = 0`` that follows another (the ``00`` sign, the ``00`` ``a``);
- ``00 00`` (non-overlapping): once per chunk, plus once per chunk with ``a = 0``.

So ``p - q = n - A`` and ``z = n + A + f`` (``A`` chunks with ``a = 0`` after the first,
``f`` whether the first has ``a = 0``): ``n = (p - q + z - f) / 2``. Cheaper and first:
a header holds at most one run of three 0 bytes (``b c d`` when ``L < 256``), and has
four 0 bytes when it does, at least three otherwise; so when the 0 bytes number four
times the ``00 00 00`` runs, every chunk is shorter than 256 bytes and ``n`` is that
count. Whether every chunk is shorter than 64 KiB is checked cheaply (each aligned
32 KiB window of the region holds a 0 byte); when not, the chunks are counted by a
regular expression (one C-level match per chunk, exact for any length).
"""

from __future__ import annotations

import re

#: complete chunks from a chunk start: each one's data is followed by a 0 byte
_RUN = re.compile(rb"(?:\x00[\x00-\xff]{4}[^\x00]+(?=\x00))*+")
_CHUNK = re.compile(rb"\x00[\x00-\xff]{4}[^\x00]+")
_WINDOW = 1 << 15
TERMINATOR = b"\x00\x00\x00\x00\x00"

Buffer = bytes | bytearray


def complete_end(data: Buffer, start: int, stop: int) -> int:
    """Where the chunks that start at ``start`` stop being complete in ``data[:stop]``
    (a chunk is complete once the 0 byte after it is in). Jumps to the last chunk
    shorter than 256 bytes (the only place ``00 00 00`` occurs, as its ``b c d``), checked,
    and walks from there."""
    hop = start
    p = data.rfind(b"\x00\x00\x00", start, stop)
    if p - 2 > start and data[p - 2] == 0 and data[p - 1] and data[p - 3] == 0x0A:
        hop = p - 2
    m = _RUN.match(data, hop, stop)
    return m.end() if m else hop


def count_chunks(data: Buffer, start: int, stop: int) -> int:
    """The chunks in ``data[start:stop]``: whole chunks from a chunk start, with
    ``data[stop]`` a 0 byte (the next sign or the terminator's)."""
    if stop <= start:
        return 0
    end = stop + 1
    for w in range(start, stop - _WINDOW + 1, _WINDOW):
        if data.find(b"\x00", w, w + _WINDOW) < 0:  # a chunk may be 64 KiB or longer
            return _exact(data, start, end)
    zeros = data.count(b"\x00", start, end) - 1
    short = data.count(b"\x00\x00\x00", start, end)
    if zeros == 4 * short:  # every chunk shorter than 256 bytes: "00 a 00 00 00"
        return short
    p = data.count(b"\n\x00", start, end)
    q = data.count(b"\n\x00\x00", start, end)
    z = data.count(b"\x00\x00", start, end)
    f = 1 if data[start + 1] == 0 else 0
    twice = p - q + z - f
    n = twice // 2
    if twice % 2 or n < 0 or z - f - n < 0:  # not COPY text as described: count exactly
        return _exact(data, start, end)
    return n


def _exact(data: Buffer, start: int, end: int) -> int:
    return _CHUNK.subn(b"", memoryview(data)[start:end])[1]


def uniform(data: Buffer, pos: int, stop: int, step: int, most: int) -> int:
    """``most`` (or as many as fit before ``stop``, at least 2) chunks from ``pos`` that are
    all ``step`` bytes long, header included, or 0 if they are not. Exact: the headers,
    ``step`` apart, are compared a column at a time (a strided slice per header byte), and
    if each of the first ``k`` headers says ``step``, the ``k`` chunks tile that span."""
    k = min(most, (stop - pos) // step)
    if k < 2:
        return 0
    end = pos + (k - 1) * step + 1
    for j in (0, 1, 2, 3, 4):
        column = data[pos + j : end + j : step]
        if column.count(column[0]) != k:
            return 0
    return k
