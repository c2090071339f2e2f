"""Progress reporting hooks. Operations call them; the CLI decides how to show them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol


class Progress(Protocol):
    """Receives byte counts during long work. Implementations must be cheap and thread-safe."""

    def start(self, what: str) -> None: ...

    def update(self, source_bytes: int, stored_bytes: int) -> None: ...

    def finish(self) -> None: ...


class Silent:
    """A Progress that shows nothing."""

    def start(self, what: str) -> None:
        pass

    def update(self, source_bytes: int, stored_bytes: int) -> None:
        pass

    def finish(self) -> None:
        pass


class Counter:
    """A pass-through Stage that counts bytes; ``report`` is called with the count."""

    def __init__(self, report: Callable[[int], None]) -> None:
        self.size = 0
        self._report = report

    def feed(self, data: bytes) -> bytes:
        self.size += len(data)
        self._report(self.size)
        return data

    def flush(self) -> bytes:
        return b""
