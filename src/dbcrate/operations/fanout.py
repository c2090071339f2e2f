"""Feed one stream to several consumers (one per storage target) with bounded memory."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar, cast

T = TypeVar("T")

_END = object()


class _Branch(Generic[T]):
    def __init__(self, consumer: Callable[[Iterator[bytes]], T], depth: int) -> None:
        self.queue: queue.Queue[object] = queue.Queue(maxsize=depth)
        self.consumer = consumer
        self.result: T | None = None
        self.error: BaseException | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _input(self) -> Iterator[bytes]:
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            assert isinstance(item, (bytes, bytearray))
            yield cast(bytes, item)  # a dump's chunk travels unencoded as a bytearray

    def _run(self) -> None:
        try:
            self.result = self.consumer(self._input())
        except BaseException as exc:  # reported to the caller, never swallowed
            self.error = exc
        finally:
            self.done.set()

    def offer(self, item: object) -> None:
        """Queue ``item`` unless the branch already ended (then it is dropped)."""
        while not self.done.is_set():
            try:
                self.queue.put(item, timeout=0.2)
                return
            except queue.Full:
                continue


def fanout(
    chunks: Iterable[bytes],
    consumers: Sequence[Callable[[Iterator[bytes]], T]],
    depth: int = 4,
) -> list[T | BaseException]:
    """Run each consumer in its own thread on a copy of ``chunks``.

    Returns, per consumer, its result or the exception it raised. A consumer that fails
    stops receiving data; the others go on. If ``chunks`` itself raises, every consumer's
    input raises that same exception (so each storage aborts its upload), and after all
    consumers have finished the exception propagates to the caller.
    Memory: at most ``depth`` chunks queued per consumer.
    """
    if len(consumers) == 1:
        try:
            return [consumers[0](iter(chunks))]
        except Exception as exc:
            if _is_input_error(exc, chunks):
                raise
            return [exc]
    branches = [_Branch(c, depth) for c in consumers]
    for b in branches:
        b.thread.start()
    failure: BaseException | None = None
    try:
        for chunk in chunks:
            live = [b for b in branches if not b.done.is_set()]
            if not live:
                break
            for b in live:
                b.offer(chunk)
    except BaseException as exc:
        failure = exc
    for b in branches:
        b.offer(failure if failure is not None else _END)
    for b in branches:
        b.thread.join()
    if failure is not None:
        raise failure
    return [b.error if b.error is not None else b.result for b in branches]  # type: ignore[misc]


def _is_input_error(exc: Exception, chunks: Iterable[bytes]) -> bool:
    """Whether ``exc`` came from the producer rather than the consumer."""
    return getattr(chunks, "failed", None) is exc


class Tracked:
    """Wraps an input iterator and remembers the exception it raised, if any."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._it = iter(chunks)
        self.failed: BaseException | None = None

    def __iter__(self) -> Iterator[bytes]:
        return self

    def close(self) -> None:
        """Close the wrapped iterator (if it can be closed)."""
        close = getattr(self._it, "close", None)
        if close is not None:
            close()

    def __next__(self) -> bytes:
        try:
            return next(self._it)
        except StopIteration:
            raise
        except BaseException as exc:
            self.failed = exc
            raise
