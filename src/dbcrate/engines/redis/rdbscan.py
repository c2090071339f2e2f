"""Walk an RDB file's opcodes to learn, per database, the key count its ``RESIZEDB``
announces, the keys it holds and how many of them have already expired (docs/verify.md:
Redis ``key_counts``). Values are skipped, never decoded; an RDB holding a type this walker
cannot skip (modules, streams, hash field expiry) ends the walk with ``problem`` set, and
the caller falls back to the total from ``redis-check-rdb``. Reads only."""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

_EOF, _SELECTDB, _EXPIRE_S, _EXPIRE_MS, _RESIZEDB, _AUX = 0xFF, 0xFE, 0xFD, 0xFC, 0xFB, 0xFA
_FREQ, _IDLE, _FUNCTION2, _SLOT_INFO = 0xF9, 0xF8, 0xF6, 0xF4
#: value types stored as one string blob (ziplist, intset, listpack, zipmap)
_BLOB_TYPES = frozenset({9, 10, 11, 12, 13, 16, 17, 20})
#: value types that are a count of strings (list, set, quicklist) or of pairs (hash)
_LIST_TYPES, _HASH_TYPE, _ZSET_OLD, _ZSET2, _QUICKLIST2 = frozenset({1, 2, 14}), 4, 3, 5, 18
#: stream value types: listpacks (v1), _2 (Redis 7.0), _3 (7.2: consumers' active time)
_STREAMS = {15: 1, 19: 2, 21: 3}


class _Unsupported(Exception):
    pass


@dataclass
class RdbScan:
    """Per database number: ``announced`` (RESIZEDB's size), ``keys`` (held) and
    ``expired`` (expiry time before the scan). ``problem``: why the walk stopped early
    (the numbers are then incomplete and must not be used)."""

    announced: dict[int, int] = field(default_factory=dict)
    keys: dict[int, int] = field(default_factory=dict)
    expired: dict[int, int] = field(default_factory=dict)
    problem: str | None = None

    def expected(self) -> dict[int, int]:
        """Keys a server loading the file now keeps per database: RESIZEDB's count (the
        held count where a database has no RESIZEDB) less the already expired."""
        dbs = set(self.announced) | set(self.keys)
        return {db: self.announced.get(db, self.keys.get(db, 0)) - self.expired.get(db, 0)
                for db in sorted(dbs)}


def _read(f: BinaryIO, n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise _Unsupported("the file ends early")
    return data


def _length(f: BinaryIO) -> tuple[int, bool]:
    """(length, special): ``special`` means the low bits name a string encoding."""
    first = _read(f, 1)[0]
    kind = first >> 6
    if kind == 0:
        return first & 0x3F, False
    if kind == 1:
        return ((first & 0x3F) << 8) | _read(f, 1)[0], False
    if kind == 3:
        return first & 0x3F, True
    if first == 0x80:
        return int(struct.unpack(">I", _read(f, 4))[0]), False
    if first == 0x81:
        return int(struct.unpack(">Q", _read(f, 8))[0]), False
    raise _Unsupported(f"unknown length encoding 0x{first:02x}")


def _count(f: BinaryIO) -> int:
    n, special = _length(f)
    if special:
        raise _Unsupported("a count is string-encoded")
    return n


def _skip(f: BinaryIO, n: int) -> None:
    if n:
        _read(f, n) if n < 4096 else f.seek(n, 1)


def _string(f: BinaryIO) -> None:
    n, special = _length(f)
    if not special:
        _skip(f, n)
    elif n in (0, 1, 2):
        _skip(f, 1 << n)
    elif n == 3:  # LZF: compressed length, plain length, data
        clen = _count(f)
        _count(f)
        _skip(f, clen)
    else:
        raise _Unsupported(f"unknown string encoding {n}")


def _value(f: BinaryIO, vtype: int) -> None:
    if vtype == 0 or vtype in _BLOB_TYPES:
        _string(f)
    elif vtype in _LIST_TYPES:
        for _ in range(_count(f)):
            _string(f)
    elif vtype == _HASH_TYPE:
        for _ in range(2 * _count(f)):
            _string(f)
    elif vtype in (_ZSET_OLD, _ZSET2):
        for _ in range(_count(f)):
            _string(f)
            if vtype == _ZSET2:
                _skip(f, 8)
            else:
                size = _read(f, 1)[0]
                _skip(f, 0 if size >= 253 else size)
    elif vtype == _QUICKLIST2:
        for _ in range(_count(f)):
            _count(f)  # container kind
            _string(f)
    elif vtype in _STREAMS:
        _stream(f, _STREAMS[vtype])
    else:
        raise _Unsupported(f"value type {vtype} (a module or a newer type)")


def _stream(f: BinaryIO, version: int) -> None:
    """Skip a stream: its listpacks, ids and counters, consumer groups with their
    pending entries and consumers (the layout of rdb.c's stream writer)."""
    for _ in range(_count(f)):
        _string(f)  # node key (master id)
        _string(f)  # listpack
    for _ in range(3 if version == 1 else 8):  # length, last id, [first id, max deleted, added]
        _count(f)
    for _ in range(_count(f)):  # consumer groups
        _string(f)
        for _ in range(2 if version == 1 else 3):  # last id, [entries read]
            _count(f)
        for _ in range(_count(f)):  # group PEL: id, delivery time, delivery count
            _skip(f, 16 + 8)
            _count(f)
        for _ in range(_count(f)):  # consumers: name, seen [, active] time, PEL ids
            _string(f)
            _skip(f, 8 if version < 3 else 16)
            _skip(f, 16 * _count(f))


def scan(path: Path, now_ms: int | None = None) -> RdbScan:
    """Walk the RDB at ``path``. Raises ``OSError``; a file this walker cannot read to
    its end gives a result with ``problem`` set."""
    now_ms = int(time.time() * 1000) if now_ms is None else now_ms
    out = RdbScan()
    with open(path, "rb") as f:
        try:
            if _read(f, 5) != b"REDIS":
                raise _Unsupported("no REDIS header")
            _read(f, 4)
            db, expires_at = 0, None
            while True:
                op = _read(f, 1)[0]
                if op == _EOF:
                    return out
                if op == _SELECTDB:
                    db = _count(f)
                elif op == _RESIZEDB:
                    out.announced[db] = _count(f)
                    _count(f)
                elif op == _AUX:
                    _string(f)
                    _string(f)
                elif op == _EXPIRE_MS:
                    expires_at = int(struct.unpack("<q", _read(f, 8))[0])
                elif op == _EXPIRE_S:
                    expires_at = int(struct.unpack("<i", _read(f, 4))[0]) * 1000
                elif op == _FREQ:
                    _read(f, 1)
                elif op == _IDLE:
                    _count(f)
                elif op == _FUNCTION2:
                    _string(f)
                elif op == _SLOT_INFO:
                    for _ in range(3):
                        _count(f)
                else:
                    _string(f)  # the key
                    _value(f, op)
                    out.keys[db] = out.keys.get(db, 0) + 1
                    if expires_at is not None and expires_at < now_ms:
                        out.expired[db] = out.expired.get(db, 0) + 1
                    expires_at = None
        except _Unsupported as exc:
            out.problem = str(exc)
            return out
