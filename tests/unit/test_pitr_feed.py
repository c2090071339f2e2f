"""The PITR feeder's window (operations/pitr/feed.py): segments are fetched ahead of
replay from the base's first one, never more than the window, never past a missing
segment; a damaged one fails only when the server asks for it. A real spool in a temp
dir; the fetch (decrypt + digest check, tested with real objects in test_pitr.py) is a
stand-in so the unit is the window alone."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest

from dbcrate.catalog import wal
from dbcrate.errors import CorruptedData
from dbcrate.operations.pitr import feed
from dbcrate.operations.pitr.feed import Feeder
from dbcrate.operations.pitr.spool import Spool

SEG = 16 << 20


def _names(first: int, n: int, tli: int = 1) -> list[str]:
    return [wal.segment_name(tli, first + i, SEG) for i in range(n)]


def _feeder(tmp_path: Path, names: list[str], damaged: set[str] = frozenset(),  # type: ignore[assignment]
            gate: threading.Event | None = None) -> tuple[Feeder, list[str]]:
    fetched: list[str] = []
    by_name = {n: wal.WalObject(key=f"j/wal/{n}", name=n, sha256="0" * 64) for n in names}

    def fetch(_s: Any, _j: Any, obj: wal.WalObject, _k: Any, _i: Any) -> bytes:
        if gate is not None:
            gate.wait(5)
        fetched.append(obj.name)
        if obj.name in damaged:
            raise CorruptedData(f"WAL object {obj.key} is corrupted")
        return obj.name.encode()

    (tmp_path / "spool").mkdir()
    spool = Spool(tmp_path / "spool")
    return Feeder(spool, None, None, by_name, None, SEG, None, fetch=fetch), fetched  # type: ignore[arg-type]


def _settle(f: Feeder, rounds: int = 50) -> None:
    for _ in range(rounds):
        f.step()
        if not f.inflight:
            return
        time.sleep(0.01)


def test_fetches_ahead_from_the_first_segment_within_the_window(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed, "WINDOW_BYTES", 4 * SEG)
    names = _names(0x10, 10)
    f, fetched = _feeder(tmp_path, names)
    try:
        f.start_at(1, 0x10)  # before the server asks for anything
        _settle(f)
        assert sorted(fetched) == names[:4]
        assert sorted(p.name for p in (tmp_path / "spool" / "ready").iterdir()) == names[:4]
        # the server takes two: the window moves on by two
        for n in names[:2]:
            (tmp_path / "spool" / "ready" / n).unlink()
        _settle(f)
        assert sorted(fetched) == names[:6]
    finally:
        f.close()


def test_stops_at_a_missing_segment(tmp_path: Path) -> None:
    names = _names(0x10, 3) + _names(0x14, 3)  # 0x13 is not archived
    f, fetched = _feeder(tmp_path, names)
    try:
        f.start_at(1, 0x10)
        _settle(f)
        assert sorted(fetched) == names[:3]
    finally:
        f.close()


def test_a_damaged_segment_fails_only_when_asked_for(tmp_path: Path) -> None:
    names = _names(0x10, 4)
    f, fetched = _feeder(tmp_path, names, damaged={names[2]})
    try:
        f.start_at(1, 0x10)
        _settle(f)  # fetched ahead, damaged: no error yet
        assert names[2] in fetched and names[2] in f.errors
        (tmp_path / "spool" / "want" / names[2]).touch()
        with pytest.raises(CorruptedData):
            f.step()
        assert (tmp_path / "spool" / "fail" / names[2]).exists()
    finally:
        f.close()


def test_a_request_is_answered_and_not_archived_is_none(tmp_path: Path) -> None:
    gate = threading.Event()
    names = _names(0x10, 2)
    f, _ = _feeder(tmp_path, names, gate=gate)
    try:
        (tmp_path / "spool" / "want" / names[0]).touch()
        (tmp_path / "spool" / "want" / "00000002.history").touch()
        f.step()
        assert (tmp_path / "spool" / "none" / "00000002.history").exists()
        assert not (tmp_path / "spool" / "ready" / names[0]).exists()
        gate.set()
        _settle(f)
        assert (tmp_path / "spool" / "ready" / names[0]).read_bytes() == names[0].encode()
        assert not (tmp_path / "spool" / "want" / names[0]).exists()
    finally:
        gate.set()
        f.close()
