"""Byte streams as ``Iterator[bytes]`` and the Stage protocol that transforms them.

A Stage is a push-style transformer: ``feed(data)`` returns whatever output is ready,
``flush()`` returns the rest and ends the stage. Codecs, hashing and byte counting are
all Stages, so a pipeline is a list of Stages applied to one pass over the data.
"""

from __future__ import annotations

import hashlib
import queue
import threading
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


class SizeStage:
    """Pass-through stage that only counts bytes (a digest with no SHA-256: for a stream
    whose manifest records only its size)."""

    def __init__(self) -> None:
        self.size = 0

    def feed(self, data: bytes) -> bytes:
        self.size += len(data)
        return data

    def flush(self) -> bytes:
        return b""

    def digest(self) -> Digest:
        return Digest(size=self.size, sha256=None)


def apply(chunks: Iterable[bytes], stages: Sequence[Stage]) -> Chunks:
    """Run ``chunks`` through ``stages`` in order, yielding non-empty output chunks.

    A stage with a ``max_input`` attribute (decompressors) is fed at most that many bytes
    at a time and each of its outputs travels on separately, so an expanding stage cannot
    build one huge chunk. Errors from the input iterator or any stage propagate unchanged.
    Closing the result early closes ``chunks`` too (it is ours: nobody else iterates it).
    """
    try:
        for chunk in chunks:
            yield from _push(stages, 0, chunk)
        # flush each stage in order, pushing its tail through the stages after it
        for i, stage in enumerate(stages):
            yield from _push(stages, i + 1, stage.flush())
    finally:
        close_iter(chunks)


def close_iter(chunks: object) -> None:
    """Close ``chunks`` if it is a generator (or has ``close``); a no-op otherwise."""
    close = getattr(chunks, "close", None)
    if callable(close):
        close()


def _push(stages: Sequence[Stage], i: int, data: bytes) -> Chunks:
    while i < len(stages) and data:
        stage = stages[i]
        limit: int | None = getattr(stage, "max_input", None)
        if limit is not None and len(data) > limit:
            view = memoryview(data)
            for start in range(0, len(data), limit):
                yield from _push(stages, i, bytes(view[start : start + limit]))
            return
        data = stage.feed(data)
        i += 1
    if data:
        yield data


def threaded(chunks: Iterable[bytes], depth: int = 4) -> Chunks:
    """Consume ``chunks`` in a background thread, at most ``depth`` chunks ahead.

    Lets the work that produces the chunks (reading a pipe, hashing) overlap with the
    work that consumes them (compressing, encrypting, uploading) on another core; both
    sides release the GIL in their heavy parts. An error in ``chunks`` is re-raised here,
    in order. Closing this iterator early (or an exception thrown into it) tells the
    thread to stop and joins it; the thread that runs ``chunks`` is the one that closes
    it, so it is never closed while it is executing. The thread finishes the ``next()``
    it is in first: a dump generator unblocks when its tool writes or dies (a stop signal
    kills tools, see ``dbcrate.interrupt``).
    """
    items: queue.Queue[tuple[int, object]] = queue.Queue(maxsize=depth)
    stop = threading.Event()
    source = iter(chunks)

    def offer(kind: int, value: object) -> bool:
        while not stop.is_set():
            try:
                items.put((kind, value), timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def run() -> None:
        try:
            for chunk in source:
                if not offer(_DATA, chunk):
                    return
        except BaseException as exc:  # handed to the consumer, never swallowed
            offer(_ERROR, exc)
            return
        finally:
            try:
                close_iter(source)
            except BaseException as exc:  # e.g. a tool's exit status on close
                offer(_ERROR, exc)
        offer(_END, None)

    thread = threading.Thread(target=run, name="pipeline", daemon=True)
    thread.start()
    try:
        while True:
            kind, value = items.get()
            if kind == _DATA:
                yield value  # type: ignore[misc]
            elif kind == _ERROR:
                assert isinstance(value, BaseException)
                raise value
            else:
                return
    finally:
        stop.set()
        thread.join()


_DATA, _ERROR, _END = 0, 1, 2


def digest_of(chunks: Iterable[bytes]) -> Digest:
    """Size and SHA-256 of a whole stream, read once with bounded memory."""
    h = HashStage()
    for chunk in chunks:
        h.feed(chunk)
    return h.digest()
