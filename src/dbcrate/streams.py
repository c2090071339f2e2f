"""Byte streams as ``Iterator[bytes]`` and the Stage protocol that transforms them.

A Stage is a push-style transformer: ``feed(data)`` returns whatever output is ready,
``flush()`` returns the rest and ends the stage. Codecs, hashing and byte counting are
all Stages, so a pipeline is a list of Stages applied to one pass over the data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

from dbcrate.model import Digest

Chunks = Iterator[bytes]

#: Preferred chunk size of the pipeline (1 MiB).
CHUNK = 1 << 20


class Stage(Protocol):
    """One step of a pipeline.

    ``feed`` may buffer and return ``b""``. ``flush`` is called exactly once, after the
    last ``feed``; a decoding stage raises ``TruncatedData`` there if its input ended
    early. Any error a stage raises is a ``DbcrateError``.
    """

    def feed(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class HashStage:
    """Pass-through stage that counts bytes and computes their SHA-256."""

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.size = 0

    def feed(self, data: bytes) -> bytes:
        self._hash.update(data)
        self.size += len(data)
        return data

    def flush(self) -> bytes:
        return b""

    def digest(self) -> Digest:
        return Digest(size=self.size, sha256=self._hash.hexdigest())


def apply(chunks: Iterable[bytes], stages: Sequence[Stage]) -> Chunks:
    """Run ``chunks`` through ``stages`` in order, yielding non-empty output chunks.

    Errors from the input iterator or any stage propagate unchanged.
    """
    for chunk in chunks:
        data = chunk
        for stage in stages:
            data = stage.feed(data)
            if not data:
                break
        if data:
            yield data
    # flush each stage in order, pushing its tail through the stages after it
    for i, stage in enumerate(stages):
        data = stage.flush()
        for later in stages[i + 1 :]:
            if not data:
                break
            data = later.feed(data)
        if data:
            yield data


def rechunk(chunks: Iterable[bytes], size: int = CHUNK) -> Chunks:
    """Regroup a stream into chunks of at least ``size`` bytes (the last may be shorter)."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) >= size:
            yield bytes(buf)
            buf.clear()
    if buf:
        yield bytes(buf)


def split(chunks: Iterable[bytes], size: int) -> Chunks:
    """Cut chunks larger than ``size`` into pieces of at most ``size`` bytes.

    Used before decompression so one input chunk cannot expand into a huge output chunk.
    """
    for chunk in chunks:
        if len(chunk) <= size:
            yield chunk
            continue
        view = memoryview(chunk)
        for i in range(0, len(chunk), size):
            yield bytes(view[i : i + size])


def digest_of(chunks: Iterable[bytes]) -> Digest:
    """Size and SHA-256 of a whole stream, read once with bounded memory."""
    h = HashStage()
    for chunk in chunks:
        h.feed(chunk)
    return h.digest()
