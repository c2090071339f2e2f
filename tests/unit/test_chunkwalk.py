"""The row counter's chunk walk in C (engines/postgres/_chunkwalk.c) against a chunk walk
in Python, and ``RowCounter`` on both paths (C, and the Python fallback forced) over
synthetic ``pg_dump -Fc -Z0`` archives: exact counts however the stream is cut, and
malformed archives (truncated, absurd or negative lengths, garbage) that must never raise
out of the stream."""

from __future__ import annotations

import json
import random
import re
import struct
from collections.abc import Callable, Iterator
from typing import cast

import pytest

from dbcrate.engines.postgres import archive
from dbcrate.engines.postgres.archive import RowCounter

_TEXT = bytes.maketrans(b"\x00\x0a", b"\x01n")
TERMINATOR = b"\x00" * 5


def _walk() -> Callable[..., tuple[int, int, int, bool]]:
    """The C walk; fails where it is not built (make test builds it: pip install -e .)."""
    assert archive.NATIVE_WALK is not None, (
        "the C chunk walk is not built: pip install -e . (or python setup.py build_ext "
        "--inplace)")
    return archive.NATIVE_WALK


def _int(v: int) -> bytes:
    return struct.pack("<BI", 1 if v < 0 else 0, abs(v))


def _str(s: str | None) -> bytes:
    if s is None:
        return _int(-1)
    raw = s.encode()
    return _int(len(raw)) + raw


def _header(tables: list[str]) -> bytes:
    """A custom-format header (1.14) and a TOC of one TABLE DATA entry per table (dump ids
    1, 2, ...)."""
    out = b"PGDMP" + bytes([1, 14, 0, 4, 8, 1]) + _int(0)  # version, sizes, format, -Z0
    out += b"".join(_int(0) for _ in range(7)) + _str("db") + _str("17.0") + _str("17.0")
    out += _int(len(tables))
    for i, name in enumerate(tables, 1):
        out += _int(i) + _int(1) + _str("0") + _str("0") + _str(name) + _str("TABLE DATA")
        out += _int(3) + _str("") + _str("") + _str(f"COPY {name} FROM stdin;\n")
        out += _str("public") + _str("") + _str("heap") + _str("me") + _str("false")
        out += _str(None) + b"\x01" + bytes(8)
    return out


def _row(rng: random.Random, length: int) -> bytes:
    return rng.randbytes(length - 1).translate(_TEXT) + b"\n"  # NUL-free, one newline


def _block(dump_id: int, rows: list[bytes]) -> bytes:
    """A data block: a chunk per row, COPY's end marker, the zero-length terminator."""
    chunks = [*rows, b"\\.\n\n\n"]
    return (b"\x01" + _int(dump_id) + b"".join(_int(len(r)) + r for r in chunks)
            + TERMINATOR)


def _blobs(sizes: list[int]) -> bytes:
    out = b"\x03" + _int(99)
    for oid, size in enumerate(sizes, 1000):
        out += _int(oid) + b"".join(_int(len(c)) + c for c in
                                    (bytes(16384)[: min(16384, size - k)]
                                     for k in range(0, size, 16384))) + _int(0)
    return out + _int(0)


LENGTHS = (1, 2, 9, 10, 11, 255, 256, 257, 300, 301, 2565, 65535, 65536, 65537, 70000)


TABLES = ["narrow", "wide", "mixed", "empty", "short", "huge"]
WIDTHS = {"narrow": (1, 2, 10, 11, 12), "wide": (290, 300, 310, 333), "mixed": LENGTHS[:11],
          "empty": (), "short": tuple(range(40, 71)), "huge": LENGTHS}


def _archive(seed: int, scale: int = 10) -> tuple[bytes, dict[str, int], int, list[int]]:
    """An archive of the tables, ``scale`` times (300, 40, 70, 0, 5, 1) rows, and 3 large
    objects; with the expected counts and where each row's chunk header is."""
    rng = random.Random(seed)
    counts = {"narrow": 300 * scale, "wide": 40 * scale, "mixed": 70 * scale, "empty": 0,
              "short": 5 * scale, "huge": scale}
    out, heads = bytearray(_header(TABLES)), []
    for i, name in enumerate(TABLES, 1):
        rows = [_row(rng, rng.choice(WIDTHS[name])) for _ in range(counts[name])]
        at = len(out) + 6  # after the block's type and dump id
        for r in rows:
            heads.append(at)
            at += 5 + len(r)
        out += _block(i, rows)
    out += _blobs([1, 16384, 40000])
    return bytes(out), {f"public.{t}": counts[t] for t in TABLES}, 3, heads


def _cuts(rng: random.Random, data: bytes, how: int | str) -> Iterator[bytes]:
    if isinstance(how, int):
        yield from (data[i : i + how] for i in range(0, len(data), how))
        return
    pos = 0
    while pos < len(data):  # random sizes from 1 byte to ~100 KiB, most of them small
        step = max(1, int(rng.expovariate(1 / rng.choice((3, 64, 4096, 100_000)))))
        piece = data[pos : pos + step]  # as bytes or (as the backup's reader) bytearray
        yield cast(bytes, bytearray(piece)) if step % 2 else piece
        pos += step


def _count(data: bytes, native: bool, how: int | str, seed: int = 0) -> RowCounter:
    counter = RowCounter(native=native)
    out = b"".join(counter(_cuts(random.Random(seed), data, how)))
    assert out == data  # a pass-through stage
    return counter


@pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
@pytest.mark.parametrize("how", [1, 5, 7, 64, 65, 4096, 1 << 20, "random"])
def test_counts_are_exact_on_both_paths_whatever_the_cuts(native: bool,
                                                          how: int | str) -> None:
    if native:
        _walk()
    data, expected, los, _ = _archive(1)
    for seed in range(3 if how == "random" else 1):
        counter = _count(data, native, how, seed)
        assert counter.problem is None
        assert {f"{s}.{t}": n for (s, t), n in counter.counts().items()} == expected
        assert counter.large_objects == los
        stats = json.loads(counter.stats() or b"null")
        assert {t["table"]: t["rows"] for t in stats["tables"]} == {
            k.split(".")[1]: v for k, v in expected.items()}


@pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
def test_every_cut_near_the_end_of_a_block_counts_exactly(native: bool) -> None:
    """Two buffers, cut anywhere in the last 200 bytes of each block (the last rows, COPY's
    end marker, the terminator, the next block's header): where a header is cut, the C
    path completes it from the next buffer's head and goes on in that buffer."""
    if native:
        _walk()
    data, expected, los, _ = _archive(4, scale=1)
    ends = [m.end() for m in re.finditer(re.escape(b"\\.\n\n\n" + TERMINATOR), data)]
    assert len(ends) == len(TABLES)
    for end in ends:
        for cut in range(end - 200, end + 12):
            counter = RowCounter(native=native)
            assert b"".join(counter(iter([data[:cut], data[cut:]]))) == data
            assert {f"{s}.{t}": n for (s, t), n in counter.counts().items()} == expected, cut
            assert counter.large_objects == los and counter.stats() is not None


def _reference(data: bytes, pos: int, left: int) -> tuple[int, int, int, bool]:
    """The walk ``_chunkwalk.walk`` must do, one chunk at a time in Python."""
    if left:
        take = min(left, len(data) - pos)
        pos, left = pos + take, left - take
    count = 0
    while not left and len(data) - pos >= 5:
        sign, length = struct.unpack_from("<BI", data, pos)
        if sign or not length:
            return pos, count, 0, True
        count += 1
        pos += 5
        take = min(length, len(data) - pos)
        pos, left = pos + take, length - take
    return pos, count, left, False


def test_the_c_walk_equals_a_python_walk_on_any_bytes() -> None:
    walk = _walk()
    rng = random.Random("walk")
    data, _, _, _ = _archive(2)
    for _ in range(3000):
        if rng.random() < 0.3:  # garbage, absurd lengths included
            buf = rng.randbytes(rng.randrange(40))
        else:
            start = rng.randrange(len(data))
            buf = data[start : start + rng.choice((4, 5, 6, 300, 5000, 100_000))]
        pos = rng.randrange(len(buf) + 1)
        left = rng.choice((0, 0, 1, 4, rng.randrange(1 << 33)))
        assert walk(buf, pos, left) == _reference(buf, pos, left), (buf[:20], pos, left)
        assert walk(bytearray(buf), pos, left) == walk(memoryview(buf), pos, left)


def test_the_c_walk_rejects_bad_arguments_and_only_those() -> None:
    walk = _walk()
    ok = _int(3) + b"ab\n" + TERMINATOR
    assert walk(ok, 0, 0) == (8, 1, 0, True)
    assert walk(ok, 0, 1 << 40) == (len(ok), 0, (1 << 40) - len(ok), False)
    assert walk(b"\x00\xff\xff\xff\xff" + b"x" * 10, 0, 0) == (15, 1, 0xFFFFFFFF - 10, False)
    assert walk(b"\x00\x03\x00", 0, 0) == (0, 0, 0, False)  # a header cut: for the caller
    assert walk(b"", 0, 0) == (0, 0, 0, False)
    for args, error in (((ok, -1, 0), ValueError), ((ok, len(ok) + 1, 0), ValueError),
                        ((ok, 0, -1), ValueError), (("text", 0, 0), TypeError),
                        ((ok, 0.5, 0), TypeError), ((ok, 0, 1 << 70), OverflowError),
                        ((memoryview(ok)[::2], 0, 0), BufferError)):
        with pytest.raises(error):
            walk(*args)


def _corruptions(data: bytes, heads: list[int]) -> Iterator[tuple[str, bytes]]:
    rng = random.Random("bad")
    body = len(_header(TABLES))
    for cut in [*rng.sample(range(body, len(data)), 40), *rng.sample(heads, 10),
                body + 3, len(data) - 1]:
        yield "truncated", data[:cut]
    for value in (0xFFFFFFFF, 0x7FFFFFFF, 0x80000000, 1 << 24):  # beyond the archive's end
        at = rng.choice(heads)
        yield "absurd", data[: at + 1] + struct.pack("<I", value) + data[at + 5 :]
    for _ in range(8):
        at = rng.choice(heads)
        yield "negative", data[:at] + b"\x01" + data[at + 1 :]
        at = rng.randrange(body, len(data))
        yield "garbage", data[:at] + rng.randbytes(rng.randrange(1, 200)) + data[at:]
    yield "unknown block", data[:body] + b"\x07" + data[body + 1 :]


@pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
def test_a_malformed_archive_never_raises_out_of_the_stream(native: bool) -> None:
    """The stream goes on whatever it holds; the C path, which reads every header, also
    never reports a count it did not walk (the Python path's scans of narrow rows do not
    read the lengths, so a corrupt one there may go unnoticed)."""
    if native:
        _walk()
    data, expected, _, heads = _archive(3, scale=1)
    for kind, bad in _corruptions(data, heads):
        for how in (1 << 20, 7, "random"):
            counter = _count(bad, native, how)  # no exception, every byte passed on
            stats = counter.stats()
            if kind == "truncated":  # cut inside a block or a large object, or (rarely,
                # between blocks) the counts of the blocks before the cut, exact
                got = json.loads(stats or b'{"tables": []}')["tables"]
                assert all(expected[f"public.{t['table']}"] == t["rows"] for t in got)
                if len(bad) in heads:
                    assert stats is None
            if kind == "unknown block":
                assert counter.problem == "unknown data block type 7"
            if native and kind in ("absurd", "negative"):
                assert stats is None, kind  # the chunk never ends, or _field rejects it
            if native and kind == "negative":
                assert counter.problem == "negative chunk length"
