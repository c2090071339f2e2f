"""Fan-out of one stream to several consumers (pure unit test, no I/O)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from dbcrate.operations.fanout import Tracked, fanout


def chunks(n: int, fail_at: int | None = None) -> Iterator[bytes]:
    for i in range(n):
        if i == fail_at:
            raise RuntimeError("producer failed")
        yield bytes([i % 256]) * 1000


def collect(it: Iterator[bytes]) -> bytes:
    return b"".join(it)


def test_every_consumer_gets_every_byte() -> None:
    expected = b"".join(chunks(200))
    assert fanout(chunks(200), [collect, collect, collect]) == [expected] * 3


def test_one_failing_consumer_does_not_stop_others() -> None:
    def broken(it: Iterator[bytes]) -> bytes:
        next(it)
        raise OSError("disk full")

    out = fanout(chunks(100), [collect, broken])
    assert out[0] == b"".join(chunks(100))
    assert isinstance(out[1], OSError)


@pytest.mark.parametrize("consumers", [1, 3])
def test_producer_failure_reaches_every_consumer_then_caller(consumers: int) -> None:
    seen: list[BaseException] = []

    def consumer(it: Iterator[bytes]) -> bytes:
        try:
            return collect(it)
        except RuntimeError as exc:
            seen.append(exc)
            raise

    with pytest.raises(RuntimeError, match="producer failed"):
        fanout(Tracked(chunks(50, fail_at=20)), [consumer] * consumers)
    assert len(seen) == consumers
