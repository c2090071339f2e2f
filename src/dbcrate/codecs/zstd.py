"""The ``zstd`` codec: Zstandard frames the ``zstd`` command line reads and writes.

The encoder writes standard frames of ``FRAME`` plaintext bytes each (the last one
shorter), each with its content size and content checksum, compressed in one call per
frame, single-threaded. ``zstd -d`` reads the concatenation as one stream. One call per
frame measured ~10 % less CPU than one streaming frame (zstd's streaming path copies its
input into a ring buffer and matches across its wrap; bench/backup.py, docs/bench.md)
for ~0.6 % larger output (no match reaches back into the frame before).
The decoder accepts one or more concatenated frames (as ``zstd -d`` does), so ``zstd``
CLI output and dbcrate's older single-frame objects decode too. Memory stays bounded:
the encoder holds at most one frame of input and the decoder returns what each input
piece expands to.
"""

from __future__ import annotations

import zstandard

from dbcrate.errors import CorruptedData, TruncatedData
from dbcrate.streams import Stage

#: plaintext bytes per frame the encoder writes (the pipeline's chunk size)
FRAME = 1 << 20
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
        self._zstd = zstandard.ZstdCompressor(level=level, write_checksum=True,
                                              write_content_size=True, threads=0)
        self._pending = bytearray()  # less than one frame of input, not yet compressed
        self._frames = 0

    def _frame(self, data: bytes | bytearray | memoryview) -> bytes:
        self._frames += 1
        return self._zstd.compress(data)

    def feed(self, data: bytes) -> bytes:
        """Compress every whole ``FRAME`` of input so far, one frame each; may return
        ``b""`` while less than a frame is held. Raises nothing."""
        if not data:
            return b""
        out: list[bytes] = []
        with memoryview(data) as view:
            if self._pending:  # top the held input up to a frame first
                need = FRAME - len(self._pending)
                self._pending += view[:need]
                view = view[need:]
                if len(self._pending) < FRAME:
                    return b""
                out.append(self._frame(self._pending))
                self._pending.clear()
            whole = len(view) - len(view) % FRAME  # the pipeline's 1 MiB chunks: no copy
            out.extend(self._frame(view[i:i + FRAME]) for i in range(0, whole, FRAME))
            self._pending += view[whole:]
        return out[0] if len(out) == 1 else b"".join(out)

    def flush(self) -> bytes:
        """The last frame: what is held (an empty frame if there was no input at all, so
        the object is still a zstd stream). Raises nothing."""
        if not self._pending and self._frames:
            return b""
        tail = self._frame(self._pending)
        self._pending.clear()
        return tail


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
