"""A seeded fuzz of the age and aes-256-gcm decoders over mutated objects.

Every mutated object either decodes to exactly the original (impossible for a real
change) or raises a ``DbcrateError`` subclass; and what was yielded before the error is a
prefix of the plaintext that ends before the first tampered chunk (nothing from a chunk
that was not authenticated reaches the consumer).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from dbcrate.codecs import Codec
from dbcrate.codecs.aesgcm import HEADER_SIZE as AES_HEADER
from dbcrate.codecs.aesgcm import AesGcmCodec
from dbcrate.codecs.age import AgeCodec, generate_identity
from dbcrate.errors import DbcrateError

CHUNK = 64 * 1024
IDENTITY, RECIPIENT = generate_identity()
CASES_PER_CODEC = 1500
SIZES = (0, 1, 1000, CHUNK, CHUNK + 1, 3 * CHUNK + 100)


@dataclass(frozen=True)
class Layout:
    codec: Callable[[], Codec]
    prefix: Callable[[bytes], int]  # bytes before the first payload chunk
    chunk: int  # stored size of a full chunk


def _age_prefix(blob: bytes) -> int:
    return blob.index(b"\n---") + blob[blob.index(b"\n---") + 1 :].index(b"\n") + 2 + 16


LAYOUTS = {
    "age": Layout(lambda: AgeCodec([RECIPIENT], [IDENTITY]), _age_prefix, CHUNK + 16),
    "aes": Layout(lambda: AesGcmCodec(bytes(range(32))), lambda _: AES_HEADER, 1 + CHUNK + 16),
}


def _encode(codec: Codec, plain: bytes) -> bytes:
    stage = codec.encoder()
    return stage.feed(plain) + stage.flush()


def _mutate(rng: random.Random, blob: bytes, layout: Layout, other: bytes) -> bytes:
    """One random change: flips, byte swaps, cuts, insertions, chunk reorderings,
    headers spliced from another encryption."""
    m = bytearray(blob)
    n = len(m)
    prefix = layout.prefix(blob)
    kind = rng.randrange(9)
    if kind == 0:  # flip one bit, half the time inside the header
        pos = rng.randrange(prefix) if rng.random() < 0.5 or n == prefix else rng.randrange(n)
        m[pos] ^= 1 << rng.randrange(8)
    elif kind == 1:  # a few random byte values
        for _ in range(rng.randint(1, 4)):
            pos = rng.randrange(n)
            m[pos] = (m[pos] + rng.randint(1, 255)) % 256
    elif kind == 2:  # truncate
        del m[rng.randrange(n) :]
    elif kind == 3:  # delete a range
        a = rng.randrange(n)
        del m[a : a + rng.randint(1, 40)]
    elif kind == 4:  # insert garbage
        pos = rng.randrange(n + 1)
        m[pos:pos] = rng.randbytes(rng.randint(1, 40))
    elif kind == 5:  # append garbage
        m += rng.randbytes(rng.randint(1, 100))
    elif kind == 6:  # splice the header of another encryption onto this body
        op = layout.prefix(other)
        m[:prefix] = other[:op]
    else:  # drop, duplicate or swap whole stored chunks
        chunks = [bytes(m[i : i + layout.chunk]) for i in range(prefix, n, layout.chunk)]
        if len(chunks) < 2 or kind == 7:
            chunks.insert(rng.randrange(len(chunks) + 1), rng.choice(chunks or [b"x"]))
        else:
            i, j = rng.sample(range(len(chunks)), 2)
            chunks[i], chunks[j] = chunks[j], chunks[i]
            if chunks[i] == chunks[j]:
                del chunks[i]
        m = bytearray(blob[:prefix] + b"".join(chunks))
    return bytes(m)


def _first_difference(a: bytes, b: bytes) -> int:
    for i, (x, y) in enumerate(zip(a, b, strict=False)):
        if x != y:
            return i
    return min(len(a), len(b))


def _decode(codec: Codec, data: bytes, rng: random.Random) -> tuple[bytes, BaseException | None]:
    stage = codec.decoder()
    out = bytearray()
    pos = 0
    try:
        while pos < len(data):
            step = rng.choice((1, 7, 100, 4096, CHUNK - 1, CHUNK + 17, 1 << 20))
            out += stage.feed(data[pos : pos + step])
            pos += step
        out += stage.flush()
    except Exception as exc:  # the point is to see what is raised
        return bytes(out), exc
    return bytes(out), None


@pytest.mark.parametrize("name", list(LAYOUTS))
def test_mutated_objects_raise_only_dbcrate_errors_and_yield_only_authenticated_chunks(
    name: str,
) -> None:
    layout = LAYOUTS[name]
    rng = random.Random(f"dbcrate-fuzz-{name}")
    plains = {size: rng.randbytes(size) for size in SIZES}
    codec = layout.codec()
    blobs = {size: _encode(codec, p) for size, p in plains.items()}
    other = _encode(codec, rng.randbytes(10))
    kinds: dict[str, int] = {}
    for case in range(CASES_PER_CODEC):
        size = SIZES[case % len(SIZES)]
        plain, blob = plains[size], blobs[size]
        mutated = _mutate(rng, blob, layout, other)
        if mutated == blob:
            continue
        out, exc = _decode(codec, mutated, rng)
        where = f"{name} case {case}, size {size}"
        assert exc is not None, f"{where}: a changed object decoded without an error"
        assert isinstance(exc, DbcrateError), f"{where}: {type(exc).__name__}: {exc}"
        kinds[type(exc).__name__] = kinds.get(type(exc).__name__, 0) + 1
        assert plain.startswith(out), f"{where}: yielded bytes that are not the plaintext"
        d = _first_difference(blob, mutated)
        prefix = layout.prefix(blob)
        first_bad_chunk = 0 if d < prefix else (d - prefix) // layout.chunk
        assert len(out) <= first_bad_chunk * CHUNK, (
            f"{where}: {len(out)} bytes yielded, but chunk {first_bad_chunk} was tampered"
        )
    # the fuzz reached more than one failure path
    assert len(kinds) >= 2, kinds
