"""STREAM chunked authenticated encryption, shared by the ``age`` and ``aes-256-gcm`` codecs.

The plaintext is cut into 64 KiB chunks; chunk ``i`` is sealed with the nonce
``i`` (11 bytes, big-endian) followed by a flag byte, 0x01 for the last chunk and 0x00
for the others. Every chunk but the last is full, and the last is empty only when it
is the only one, so the sealer holds back up to one chunk until ``flush``. Nonces
never repeat under one key, and truncation, reordering or appended data fail
authentication or the framing checks.

With ``marker=True`` (the ``aes-256-gcm`` format) each sealed chunk is preceded by
its flag byte in the clear, which lets the opener tell a stream that ended inside a
non-final chunk (``TruncatedData``) from damaged data (``CorruptedData``).
"""

from __future__ import annotations

from typing import Protocol

from cryptography.exceptions import InvalidTag

from dbcrate.errors import CorruptedData, TruncatedData

CHUNK = 64 * 1024
TAG = 16
_LAST = 1


class Aead(Protocol):
    """What we use of ``cryptography``'s AEAD classes."""

    def encrypt_into(
        self,
        nonce: bytes,
        data: bytes | memoryview,
        associated_data: bytes | None,
        buf: bytearray | memoryview,
    ) -> int: ...

    def decrypt_into(
        self,
        nonce: bytes,
        data: bytes | memoryview,
        associated_data: bytes | None,
        buf: bytearray | memoryview,
    ) -> int: ...


def _nonce(counter: int, last: bool) -> bytes:
    return ((counter << 8) | (_LAST if last else 0)).to_bytes(12, "big")


class StreamSealer:
    """Encrypts one stream; ``feed``/``flush`` return ciphertext and never raise."""

    def __init__(self, aead: Aead, aad: bytes | None, marker: bool) -> None:
        self._aead = aead
        self._aad = aad
        self._marker = 1 if marker else 0
        self._unit = self._marker + CHUNK + TAG
        self._pending = bytearray()
        self._counter = 0

    def _seal(self, plain: bytes | memoryview, last: bool, out: memoryview) -> int:
        """Seal one chunk into ``out``; return the bytes written."""
        if self._marker:
            out[0] = _LAST if last else 0
        written = self._aead.encrypt_into(
            _nonce(self._counter, last), plain, self._aad, out[self._marker :]
        )
        self._counter += 1
        return self._marker + written

    def feed(self, data: bytes) -> bytes:
        """Seal every chunk known not to be the last one; buffer the rest."""
        size = len(data)
        if not size:
            return b""
        pending = self._pending
        view = memoryview(data)
        pos = 0
        head: bytes | memoryview | None = None
        if pending:
            need = CHUNK - len(pending)
            if size <= need:  # cannot know yet whether this is the last chunk
                pending += view
                return b""
            pending += view[:need]
            pos = need
            head = bytes(pending)
        # full chunks in data[pos:] that are followed by at least one more byte
        count = (size - pos - 1) // CHUNK
        out = bytearray(self._unit * (count + (head is not None)))
        out_view = memoryview(out)
        offset = 0
        if head is not None:
            offset += self._seal(head, False, out_view[: self._unit])
        for _ in range(count):
            chunk = view[pos : pos + CHUNK]
            offset += self._seal(chunk, False, out_view[offset : offset + self._unit])
            pos += CHUNK
        pending.clear()
        pending += view[pos:]
        return bytes(out)

    def flush(self) -> bytes:
        """Seal the buffered rest as the last chunk (empty only if the stream was)."""
        plain = bytes(self._pending)
        self._pending.clear()
        out = bytearray(self._marker + len(plain) + TAG)
        self._seal(plain, True, memoryview(out))
        return bytes(out)


class PrefixedSealer:
    """An encoding Stage: ``prefix`` (a format's header) then the sealed chunks."""

    def __init__(self, prefix: bytes, sealer: StreamSealer) -> None:
        self._prefix = prefix
        self._sealer = sealer

    def _take_prefix(self) -> bytes:
        prefix, self._prefix = self._prefix, b""
        return prefix

    def feed(self, data: bytes) -> bytes:
        """Encrypt ``data``; the header comes out with the first bytes. Raises nothing."""
        out = self._sealer.feed(data)
        return self._take_prefix() + out if self._prefix else out

    def flush(self) -> bytes:
        """Encrypt the last chunk. Raises nothing."""
        return self._take_prefix() + self._sealer.flush()


class StreamOpener:
    """Decrypts one stream sealed by ``StreamSealer`` (or by age)."""

    def __init__(self, aead: Aead, aad: bytes | None, marker: bool, what: str) -> None:
        self._aead = aead
        self._aad = aad
        self._marker = 1 if marker else 0
        self._unit = self._marker + CHUNK + TAG
        self._what = what
        self._pending = bytearray()
        self._counter = 0

    def _open(self, unit: bytes | memoryview, last: bool, out: memoryview) -> int | None:
        """Open one sealed chunk (without its marker) into ``out``; None if it fails."""
        try:
            return self._aead.decrypt_into(_nonce(self._counter, last), unit, self._aad, out)
        except InvalidTag:
            return None

    def _corrupted(self, why: str) -> CorruptedData:
        return CorruptedData(f"{self._what} payload chunk {self._counter} {why}")

    def _open_middle(self, unit: memoryview, out: memoryview) -> None:
        """Open a full chunk that more data follows; it must not be the last one."""
        if self._marker and unit[0] != 0:
            raise self._corrupted("is marked last but more data follows (or is damaged)")
        body = unit[self._marker :]
        if self._open(body, False, out) is None:
            if self._open(body, True, out) is not None:
                raise self._corrupted("is the last one but more data follows")
            raise self._corrupted("failed authentication (the data is damaged)")
        self._counter += 1

    def feed(self, data: bytes) -> bytes:
        """Decrypt every complete chunk that more data follows.

        Raises ``CorruptedData`` if a chunk fails authentication or data follows the
        last chunk.
        """
        if not data:
            return b""
        pending = self._pending
        unit = self._unit
        view = memoryview(data)
        pos = 0
        chunks = (len(pending) + len(data) - 1) // unit
        if not chunks:
            pending += view
            return b""
        out = bytearray(CHUNK * chunks)
        out_view = memoryview(out)
        offset = 0
        if pending:
            need = unit - len(pending)
            pending += view[:need]
            pos = need
            with memoryview(pending) as head:
                self._open_middle(head, out_view[:CHUNK])
            offset = CHUNK
            chunks -= 1
        for _ in range(chunks):
            self._open_middle(view[pos : pos + unit], out_view[offset : offset + CHUNK])
            pos += unit
            offset += CHUNK
        pending.clear()
        pending += view[pos:]
        return bytes(out)

    def flush(self) -> bytes:
        """Decrypt the last chunk.

        Raises ``TruncatedData`` if the stream ended before its last chunk, and
        ``CorruptedData`` if the last chunk fails authentication or is empty though
        not the only chunk.
        """
        data = memoryview(bytes(self._pending))
        self._pending.clear()
        if len(data) < self._marker + TAG:
            raise TruncatedData(f"{self._what} payload ended before its last chunk")
        flag = data[0] if self._marker else _LAST
        body = data[self._marker :]
        out = bytearray(len(body) - TAG)
        if flag not in (0, _LAST):
            raise self._corrupted("has an invalid marker byte")
        if self._open(body, True, memoryview(out)) is not None:
            if flag != _LAST:
                raise self._corrupted("is marked as not last (the data is damaged)")
            if not out and self._counter:
                raise self._corrupted("is an empty last chunk after other chunks")
            return bytes(out)
        # not a valid last chunk: did the stream stop after, or inside, a middle chunk?
        if len(data) == self._unit and self._open(body, False, memoryview(out)) is not None:
            raise TruncatedData(f"{self._what} payload ended after chunk {self._counter}")
        if self._marker and flag == 0 and len(data) < self._unit:
            raise TruncatedData(f"{self._what} payload ended inside chunk {self._counter}")
        raise self._corrupted("failed authentication (the data is damaged or truncated)")
