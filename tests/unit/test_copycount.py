"""The buffer-at-a-time chunk counter of ``pg_dump -Fc -Z0`` data blocks against a
one-chunk-at-a-time walk, on row lengths chosen to hit every pattern its arithmetic
relies on (lengths 1, 10, multiples of 256, 2560-2815, 64 KiB and more)."""

from __future__ import annotations

import random
import struct

import pytest

from dbcrate.engines.postgres.copycount import TERMINATOR, complete_end, count_chunks, uniform

EDGES = (1, 2, 3, 5, 9, 10, 11, 255, 256, 257, 512, 2560, 2570, 2815, 2816, 65535, 65536,
         65546, 70000, 655370)


_TEXT = bytes.maketrans(b"\x00\x0a", b"\x01n")


def _row(rng: random.Random, length: int) -> bytes:
    body = rng.randbytes(length - 1).translate(_TEXT)
    return body + b"\n"  # NUL-free COPY text, one newline at the end


def _block(rng: random.Random, lengths: list[int]) -> tuple[bytes, list[int]]:
    data, starts = bytearray(), []
    for length in lengths:
        starts.append(len(data))
        data += struct.pack("<BI", 0, length) + _row(rng, length)
    return bytes(data), starts


def _lengths(rng: random.Random, mix: str) -> list[int]:
    if mix == "narrow":
        return [rng.choice((1, 2, 10, 10, 11, 12, 13)) for _ in range(3000)]
    if mix == "edges":
        return [rng.choice(EDGES[:14]) for _ in range(400)]
    return [rng.choice(EDGES) for _ in range(60)]  # "big": chunks of 64 KiB and more


@pytest.mark.parametrize("mix", ["narrow", "edges", "big"])
def test_counts_whole_blocks_exactly(mix: str) -> None:
    rng = random.Random(mix)
    for _ in range(20):
        lengths = _lengths(rng, mix)
        data, _ = _block(rng, lengths)
        framed = data + TERMINATOR + b"\x01"
        assert framed.find(TERMINATOR) == len(data)
        assert count_chunks(framed, 0, len(data)) == len(lengths)


@pytest.mark.parametrize("mix", ["narrow", "edges", "big"])
def test_a_buffer_cut_anywhere_counts_the_complete_chunks(mix: str) -> None:
    rng = random.Random(mix + "cut")
    lengths = _lengths(rng, mix)
    data, starts = _block(rng, lengths)
    for _ in range(200):
        first = rng.randrange(len(starts))
        start = starts[first]
        cut = rng.randrange(start, len(data) + 1)
        end = complete_end(data, start, cut)
        # complete: its data and the next chunk's sign byte are before the cut
        whole = [i for i in range(first, len(starts)) if starts[i] + 5 + lengths[i] < cut]
        assert end == (starts[whole[-1]] + 5 + lengths[whole[-1]] if whole else start)
        assert count_chunks(data, start, end) == len(whole)


def test_runs_of_one_length_are_counted_only_when_every_header_agrees() -> None:
    rng = random.Random("uniform")
    data, starts = _block(rng, [264] * 50 + [265] + [264] * 10)
    step = 5 + 264
    assert uniform(data, 0, len(data), step, 50) == 50
    assert uniform(data, 0, len(data), step, 51) == 0  # the 51st is one byte longer
    assert uniform(data, starts[51], len(data), step, 100) == 10  # as many as fit
    assert uniform(data, starts[51], len(data) - 1, step, 100) == 9  # the last one is cut
