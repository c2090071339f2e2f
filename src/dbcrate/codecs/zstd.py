"""The ``zstd`` codec: Zstandard frames the ``zstd`` command line reads and writes.

The encoder writes one standard frame with a content checksum, single-threaded and
streaming. The decoder accepts one or more concatenated frames (as ``zstd -d`` does),
so ``zstd`` CLI output decodes too. Memory stays bounded: the encoder holds only
zstd's window and the decoder returns what each input piece expands to.
"""

from __future__ import annotations

import zstandard

from dbcrate.errors import CorruptedData, TruncatedData
from dbcrate.streams import Stage

#: Largest window a frame may ask for when decoding (zstd's default limit, 128 MiB).
_MAX_WINDOW = 1 << 27


#: compressed bytes decoded per ``feed`` at most (pg_dump data compresses up to ~100:1)
DECODE_INPUT = 16 << 10
#: what one ``feed``'s output should stay around: the decoder lowers its ``max_input``
#: to the ratio it sees, so a run of very compressible data (blank-padded columns, 120:1)
#: does not travel in 2 MiB pieces (each held by the stages after it)
DECODE_OUTPUT = 512 << 10
#: the smallest ``max_input`` that adapting may reach
_MIN_INPUT = 2 << 10

class _ZstdEncoder:
    def __init__(self, level: int) -> None:
        compressor = zstandard.ZstdCompressor(level=level, write_checksum=True, threads=0)
        self._obj = compressor.compressobj()

    def feed(self, data: bytes) -> bytes:
        """Compress ``data``; may return ``b""`` while zstd buffers. Raises nothing."""
        return self._obj.compress(data)

    def flush(self) -> bytes:
        """End the frame and return its tail. Raises nothing."""
        return self._obj.flush()


class _ZstdDecoder:
    def __init__(self) -> None:
        #: fed at most this much at a time by ``streams.apply``, so one output chunk stays
        #: small even for very compressible data (DECODE_INPUT, lowered by ratio)
        self.max_input = DECODE_INPUT
        self._dctx = zstandard.ZstdDecompressor(max_window_size=_MAX_WINDOW)
        self._obj = self._dctx.decompressobj()
        self._in_frame = False  # bytes of an unfinished frame have been fed
        self._frames = 0

    def feed(self, data: bytes) -> bytes:
        """Decompress ``data``.

        Raises ``CorruptedData`` if the bytes are not a valid zstd stream (bad frame,
        checksum mismatch, trailing garbage).
        """
        if not data:
            return b""
        fed = len(data)
        out: list[bytes] = []
        while data:
            self._in_frame = True
            try:
                out.append(self._obj.decompress(data))
            except zstandard.ZstdError as exc:
                raise CorruptedData(f"zstd data is corrupted ({exc})") from None
            if not self._obj.eof:
                break
            # a frame ended: anything after it is the start of another frame
            self._frames += 1
            self._in_frame = False
            data = self._obj.unused_data
            self._obj = self._dctx.decompressobj()
        result = b"".join(out) if len(out) != 1 else out[0]
        if result:  # the next input: about DECODE_OUTPUT at the ratio just seen
            fit = fed * DECODE_OUTPUT // len(result)
            self.max_input = max(_MIN_INPUT, min(DECODE_INPUT, fit))
        return result

    def flush(self) -> bytes:
        """Check the stream ended at a frame boundary.

        Raises ``TruncatedData`` if the input stopped inside a frame or held no frame.
        """
        if self._in_frame or self._frames == 0:
            raise TruncatedData("zstd stream ended before its frame was complete")
        return b""


class ZstdCodec:
    """Zstandard compression (``zstd``, extension ``zst``) at ``level`` (1..22)."""

    name = "zstd"
    ext = "zst"

    def __init__(self, level: int = 1) -> None:
        self.level = level

    def encoder(self) -> Stage:
        """A Stage writing one zstd frame. Raises nothing."""
        return _ZstdEncoder(self.level)

    def decoder(self) -> Stage:
        """A Stage reading zstd frames; its ``feed`` raises ``CorruptedData`` and its
        ``flush`` ``TruncatedData``."""
        return _ZstdDecoder()
