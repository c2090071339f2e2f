"""PITR's pure parts: WAL keys and names, LSNs, the config keys, the tar scan, page
headers, continuity, WAL retention and reading a recovery server's log."""

from __future__ import annotations

import io
import struct
import tarfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbcrate.catalog import wal
from dbcrate.config.pitr import parse_pitr
from dbcrate.engines.postgres.physical.recovery import parse_log
from dbcrate.engines.postgres.physical.tarscan import TarScan
from dbcrate.engines.postgres.physical.walpage import read_header
from dbcrate.errors import ConfigError
from dbcrate.model import Digest, Manifest, ObjectInfo
from dbcrate.operations.pitr import continuity
from dbcrate.operations.pitr.prune import prunable

SHA = "ab" * 32
SEG = 16 << 20


def test_wal_keys_round_trip() -> None:
    for name in ("000000010000000A0000002F", "00000002.history",
                 "000000010000000000000002.00000028.backup", "000000010000000000000003.partial"):
        key = wal.wal_key("orders", name, SHA, ("zst", "age"))
        assert key.startswith(f"orders/wal/{name[:8]}/{name}-{SHA}.zst.age")
        parsed = wal.parse_wal_key(key, "orders", 5)
        assert parsed is not None and parsed.name == name and parsed.sha256 == SHA
    assert wal.parse_wal_key("orders/wal/archive.json", "orders") is None
    assert wal.parse_wal_key(f"orders/wal/00000002/000000010000000A0000002F-{SHA}",
                             "orders") is None  # filed under the wrong timeline
    assert not wal.is_wal_name("../../etc") and wal.is_wal_name("000000010000000A0000002F")


def test_lsns_and_segments() -> None:
    assert wal.parse_lsn("16/B374D848") == 0x16B374D848
    assert wal.format_lsn(0x16B374D848) == "16/B374D848"
    with pytest.raises(ValueError):
        wal.parse_lsn("16B374D848")
    segno = wal.segment_no(wal.parse_lsn("A/2F000028"), SEG)
    assert wal.segment_name(1, segno, SEG) == "000000010000000A0000002F"
    assert wal.parse_segment("000000010000000A0000002F", SEG) == (1, segno)
    big = 1 << 30
    assert wal.segment_name(3, wal.segment_no(wal.parse_lsn("2/40000000"), big),
                            big) == "000000030000000200000001"
    assert wal.parse_history("1\t0/3000090\tbefore 2026\n# note\n2\t0/5000000\tx\n") == [
        (1, 0x3000090), (2, 0x5000000)]


def test_config_keys() -> None:
    s = parse_pitr({"mode": "physical", "archive": "stream", "partial_interval": "5s",
                    "max_rpo": "5m"})
    assert s.physical and s.partial_interval == timedelta(seconds=5)
    assert s.max_rpo == timedelta(minutes=5)
    assert not parse_pitr({}).physical
    with pytest.raises(ConfigError, match="mode"):
        parse_pitr({"mode": "wal"})
    with pytest.raises(ConfigError, match="physical"):
        parse_pitr({"archive": "stream"})
    with pytest.raises(ConfigError, match="partial_interval"):
        parse_pitr({"mode": "physical", "partial_interval": "soon"})


def test_tar_scan_keeps_small_members_as_they_pass() -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data in (("base/1/1259", b"x" * 70000), ("backup_label", b"START TIMELINE: 1"),
                           ("global/pg_control", b"\x01" * 8192)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    raw = buf.getvalue()
    scan = TarScan({"backup_label": 100, "global/pg_control": 8})
    out = b"".join(scan(raw[i:i + 777] for i in range(0, len(raw), 777)))
    assert out == raw
    assert scan.members == {"backup_label": b"START TIMELINE: 1",
                            "global/pg_control": b"\x01" * 8}
    assert scan.names == ["base/1/1259", "backup_label", "global/pg_control"]


def test_page_header() -> None:
    head = struct.pack("<HHIQI4xQII", 0xD116, 0x0002, 1, 0x3000000, 0, 7424242, SEG, 8192)
    h = read_header(head + b"\0" * 100)
    assert h is not None and h.system_identifier == 7424242 and h.segment_size == SEG
    assert read_header(head[:20]) is None
    short = struct.pack("<HHIQI4xQII", 0xD116, 0x0000, 1, 0x3000000, 0, 7424242, SEG, 8192)
    assert read_header(short) is None


def _obj(segno: int, tli: int = 1, at: datetime | None = None) -> wal.WalObject:
    name = wal.segment_name(tli, segno, SEG)
    return wal.WalObject(key=wal.wal_key("j", name, SHA, ()), name=name, sha256=SHA,
                         modified=at)


def test_continuity() -> None:
    t0 = datetime(2026, 12, 1, tzinfo=UTC)
    stored = [_obj(2, at=t0), _obj(3, at=t0 + timedelta(minutes=1)),
              _obj(5, at=t0 + timedelta(minutes=3)), _obj(6, tli=2, at=t0 + timedelta(minutes=4))]
    segs = continuity.available(stored, SEG, 1)
    assert continuity.span(segs, 2, 3).missing == ()
    assert continuity.span(segs, 2, 6).missing == (4,)
    assert continuity.end_for_time(segs, 2, t0 + timedelta(seconds=30)) == 3
    assert continuity.end_for_time(segs, 2, t0 + timedelta(hours=1)) == 6
    err = continuity.gap_error(continuity.span(segs, 2, 6), 1, SEG, "j", "a restore")
    assert err.exit_code == 13 and wal.segment_name(1, 4, SEG) in err.message


def _base(start: str) -> Manifest:
    now = datetime.now(UTC)
    return Manifest(format=2, id="0190f0f0-0000-7000-8000-000000000000", job="j",
                    engine="postgres", server_version="17.2", tool="pg_basebackup",
                    tool_version="17.2", stages=(), started_at=now, finished_at=now,
                    plaintext=Digest(0, SHA), stored=Digest(0, SHA), encryption="none",
                    kind="base", extra={"start_lsn": start, "stop_lsn": start,
                                        "segment_size": str(SEG), "timeline": "1"})


def test_wal_retention() -> None:
    stored = [_obj(n) for n in range(1, 6)]
    history = wal.WalObject(key=wal.wal_key("j", "00000002.history", SHA, ()),
                            name="00000002.history", sha256=SHA)
    doomed = prunable([*stored, history], [_base("0/3000028"), _base("0/5000000")])
    assert [o.name for o in doomed] == [stored[0].name, stored[1].name]
    assert prunable(stored, []) == []


def test_recovery_log() -> None:
    log = ("LOG:  recovery stopping before commit of transaction 750, time 2026-12-01 "
           "21:00:01.5+00\nLOG:  redo done at 0/3000060\nLOG:  last completed transaction "
           "was at log time 2026-12-01 21:00:00.25+00\nLOG:  selected new timeline ID: 2\n"
           "LOG:  database system is ready to accept connections\n")
    st = parse_log(log, "promote")
    assert st.done and not st.failed and st.timeline == 2
    assert st.last_commit == "2026-12-01 21:00:00.25+00" and st.redo_done == "0/3000060"
    bad = parse_log("FATAL:  recovery ended before configured recovery target was reached\n",
                    "promote")
    assert not bad.done and "recovery ended" in bad.failed


def test_listing_backups_never_pages_through_wal(tmp_path: Path) -> None:
    """``list`` reads a job's dated keys only: its WAL objects are never yielded."""
    from dbcrate.config import TargetConfig
    from dbcrate.operations.listing import read
    from dbcrate.storage.local import LocalStorage

    local = LocalStorage.from_config(TargetConfig("t", "local", {"path": str(tmp_path)}))
    seen: list[str] = []

    class Recording:
        name = "t"

        def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
            for obj in local.list(prefix):
                seen.append(obj.key)
                yield obj

        def get(self, key: str) -> Iterator[bytes]:
            return local.get(key)

    local.put("j/2026/12/01/x.tar.manifest.json", [b"{}"])
    for n in range(3):
        local.put(wal.wal_key("j", wal.segment_name(1, n, SEG), SHA, ("zst",)), [b"w"])
    assert list(read(Recording(), "j")) == []  # type: ignore[arg-type]
    assert seen == ["j/2026/12/01/x.tar.manifest.json"]
