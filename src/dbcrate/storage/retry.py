"""A Storage wrapper that retries replayable operations, and the transient-error type.

Only work that can be repeated without side effects is retried: ``list``, ``delete``,
``probe``, and ``get`` up to the moment its first byte is handed to the caller. ``put``
is passed through untouched, because a stream cannot be replayed; backends retry their
own buffered parts. Only ``StorageUnavailable`` (unreachable, timed out, throttled,
5xx) is retried; every other error propagates at once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from dbcrate.errors import StorageUnavailable
from dbcrate.model import ObjectInfo
from dbcrate.storage import Storage

T = TypeVar("T")

#: Upper bound of a single backoff sleep, in seconds.
MAX_DELAY = 8.0


def backoff_delays(attempts: int, base_delay: float) -> Iterator[float]:
    """The sleeps between ``attempts`` tries: ``base, 2*base, 4*base ...`` capped at MAX_DELAY."""
    for i in range(max(attempts - 1, 0)):
        yield min(base_delay * (2**i), MAX_DELAY)


class RetryingStorage:
    """Wraps a Storage; retries its replayable operations on ``StorageUnavailable``.

    ``attempts`` counts the first try. Errors after the last attempt propagate unchanged.
    """

    def __init__(self, inner: Storage, attempts: int = 3, base_delay: float = 0.5) -> None:
        if attempts < 1:
            raise ValueError("attempts must be at least 1")
        self.inner = inner
        self.name = inner.name
        self.attempts = attempts
        self.base_delay = base_delay

    def __repr__(self) -> str:
        return f"RetryingStorage({self.inner!r}, attempts={self.attempts})"

    def _call(self, fn: Callable[[], T]) -> T:
        delays = backoff_delays(self.attempts, self.base_delay)
        while True:
            try:
                return fn()
            except StorageUnavailable:
                delay = next(delays, None)
                if delay is None:
                    raise
                time.sleep(delay)

    def describe(self) -> str:
        """The wrapped target's description."""
        return self.inner.describe()

    def put(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        """Passed through (a stream is not replayable); atomic as the wrapped Storage's put.
        Raises what the wrapped ``put`` raises."""
        return self.inner.put(key, chunks)

    def get(self, key: str, start: int | None = None, end: int | None = None) -> Iterator[bytes]:
        """The wrapped ``get``, retried until its first chunk arrives; later failures
        propagate. Raises ``ObjectNotFound`` or ``StorageError`` (on first iteration)."""

        def first() -> tuple[Iterator[bytes], bytes | None]:
            it = self.inner.get(key, start, end)
            try:
                return it, next(it)
            except StopIteration:
                return it, None

        def stream() -> Iterator[bytes]:
            it, head = self._call(first)
            if head is None:
                return
            yield head
            yield from it

        return stream()

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        """The wrapped ``list``, fully read with retries before anything is yielded.
        Raises ``StorageError``."""
        return iter(self._call(lambda: list(self.inner.list(prefix))))

    def delete(self, key: str) -> None:
        """The wrapped ``delete`` (idempotent, hence retried). Raises ``StorageError``."""
        self._call(lambda: self.inner.delete(key))

    def probe(self) -> None:
        """The wrapped ``probe``, retried. Raises ``StorageError`` naming the failed step."""
        self._call(self.inner.probe)
