"""The ``gzip`` codec: zlib's deflate in a gzip wrapper that ``gzip -d`` reads.

The decoder accepts concatenated members like ``gzip -d``. Each member's CRC-32 and
length trailer detects corruption of the compressed data; the gzip header's
modification time, extra-flags and OS bytes are not covered by any check in the format.
"""

from __future__ import annotations

import zlib

from dbcrate.errors import CorruptedData, TruncatedData
from dbcrate.streams import Stage

_GZIP_WBITS = 31  # 16 + 15: gzip wrapper, 32 KiB window
_MAGIC = b"\x1f\x8b"


#: compressed bytes decoded per ``feed`` (pg_dump data compresses up to ~100:1, so an
#: output chunk stays around a MiB)
DECODE_INPUT = 16 << 10

class _GzipEncoder:
    def __init__(self, level: int) -> None:
        self._obj = zlib.compressobj(level, zlib.DEFLATED, _GZIP_WBITS)

    def feed(self, data: bytes) -> bytes:
        """Compress ``data``; may return ``b""``. Raises nothing."""
        return self._obj.compress(data)

    def flush(self) -> bytes:
        """End the member and return its tail. Raises nothing."""
        return self._obj.flush(zlib.Z_FINISH)


class _GzipDecoder:
    #: fed at most this much at a time by ``streams.apply``, so one output chunk stays
    #: small even for very compressible data (see DECODE_INPUT)
    max_input = DECODE_INPUT

    def __init__(self) -> None:
        self._obj = zlib.decompressobj(_GZIP_WBITS)
        self._in_member = False
        self._members = 0
        self._head = b""  # the first bytes of the current member

    def feed(self, data: bytes) -> bytes:
        """Decompress ``data``.

        Raises ``CorruptedData`` if the bytes are not valid gzip (bad header, bad
        deflate data, CRC or length mismatch, trailing garbage).
        """
        out: list[bytes] = []
        while data:
            if len(self._head) < 2:
                self._head += data[: 2 - len(self._head)]
            self._in_member = True
            try:
                out.append(self._obj.decompress(data))
            except zlib.error as exc:
                raise CorruptedData(f"gzip data is corrupted ({exc})") from None
            if not self._obj.eof:
                break
            self._members += 1
            self._in_member = False
            data = self._obj.unused_data
            self._obj = zlib.decompressobj(_GZIP_WBITS)
            self._head = b""
        return b"".join(out)

    def flush(self) -> bytes:
        """Check the stream ended at a member boundary.

        Raises ``TruncatedData`` if the input stopped inside a member or held none,
        ``CorruptedData`` if a few bytes that cannot start a member follow the last one.
        """
        if self._in_member and self._members and not _MAGIC.startswith(self._head):
            raise CorruptedData("gzip stream has trailing data after its end")
        if self._in_member or self._members == 0:
            raise TruncatedData("gzip stream ended before its end marker")
        return b""


class GzipCodec:
    """gzip compression (``gzip``, extension ``gz``) at ``level`` (1..9)."""

    name = "gzip"
    ext = "gz"

    def __init__(self, level: int = 6) -> None:
        self.level = level

    def encoder(self) -> Stage:
        """A Stage writing one gzip member. Raises nothing."""
        return _GzipEncoder(self.level)

    def decoder(self) -> Stage:
        """A Stage reading gzip members; its ``feed`` raises ``CorruptedData`` and its
        ``flush`` ``TruncatedData``."""
        return _GzipDecoder()
