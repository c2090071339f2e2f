"""PITR (docs/pitr.md): base backups + the WAL archive of a real cluster whose
archive_command is ``dbcrate wal-push``, restored to a time, an LSN and the end."""

from __future__ import annotations

import json
import uuid

import pytest

from tests.servers.pitr import PitrCluster, PitrFactory


def _table(c: object) -> str:
    return f"t_{uuid.uuid4().hex[:8]}"


@pytest.mark.parametrize("major", [14, 17, 18])
def test_restore_to_time_lsn_and_end(pitr_cluster: PitrFactory, major: int) -> None:
    """A time between two commits has exactly the first; the LSN after the first commit
    the same; the end both."""
    c = pitr_cluster(major)
    t = _table(c)
    c.sql(f"CREATE TABLE {t} (id int)")
    out = c.dbcrate("backup", "pitr", "--json", check=True)
    assert '"kind": "base"' in out.stdout
    c.sql(f"INSERT INTO {t} VALUES (1)")
    lsn1 = str(c.sql("SELECT pg_current_wal_insert_lsn()")[0][0])
    t1 = c.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC',"
               " 'YYYY-MM-DD\"T\"HH24:MI:SS.US')")[0][0]
    c.sql(f"INSERT INTO {t} VALUES (2)")
    c.switch_and_wait()
    for args, expected in ((("--to-time", t1), [(1,)]), (("--to-lsn", lsn1), [(1,)]),
                           (("--to-end",), [(1,), (2,)])):
        d = c.new_dir()
        result = c.restore_json(c.restore(*args, "--data-dir", str(d), "--json"))
        assert result["base_id"]
        assert c.query_copy(d, f"SELECT id FROM {t} ORDER BY id") == expected, args


def _base_then_rows(c: PitrCluster, t: str) -> tuple[str, str]:
    """A base, then rows 1 and 2 in one segment (which is closed and archived) with the
    time between them, then row 3 in the next segment (also archived). Returns (time
    between 1 and 2, name of the segment holding row 3)."""
    c.sql(f"CREATE TABLE {t} (id int)")
    c.dbcrate("backup", "pitr", check=True)
    c.sql(f"INSERT INTO {t} VALUES (1)")
    mid = c.sql("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC',"
                " 'YYYY-MM-DD\"T\"HH24:MI:SS.US')")[0][0]
    c.sql(f"INSERT INTO {t} VALUES (2)")
    c.switch_and_wait()
    c.sql(f"INSERT INTO {t} VALUES (3)")
    third = c.switch_and_wait()
    c.sql(f"INSERT INTO {t} VALUES (4)")
    c.switch_and_wait()
    return str(mid), third


def test_deleted_wal_object_is_a_gap(pitr_cluster: PitrFactory) -> None:
    """``wal verify`` names the deleted segment (exit 13); a restore past it fails before
    creating D; one before it works."""
    c = pitr_cluster(17)
    t = f"t_{uuid.uuid4().hex[:8]}"
    mid, third = _base_then_rows(c, t)
    [obj] = c.wal_objects(third)
    kept = obj.read_bytes()
    obj.unlink()
    try:
        proc = c.dbcrate("wal", "verify", "pitr", "--json")
        assert proc.returncode == 13, proc.stderr
        assert third in json.loads(proc.stdout)[0]["gaps"]
        d = c.new_dir()
        past = c.restore("--to-end", "--data-dir", str(d))
        assert past.returncode == 13, past.stderr
        assert third in past.stderr
        assert not d.exists()
        before = c.restore("--to-time", mid, "--data-dir", str(d), "--json")
        c.restore_json(before)
        assert c.query_copy(d, f"SELECT id FROM {t} ORDER BY id") == [(1,)]
    finally:
        obj.write_bytes(kept)
        c.chown(obj.parent)
    assert c.dbcrate("wal", "verify", "pitr").returncode == 0


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_wal_object_stops_the_restore(pitr_cluster: PitrFactory, damage: str) -> None:
    """A flipped byte or a cut: the restore exits 5 naming the object, no data directory
    is left; ``wal-fetch`` exits > 125 (PostgreSQL aborts instead of ending recovery)."""
    c = pitr_cluster(17)
    t = f"t_{uuid.uuid4().hex[:8]}"
    _, third = _base_then_rows(c, t)
    [obj] = c.wal_objects(third)
    kept = obj.read_bytes()
    bad = bytearray(kept)
    if damage == "flip":
        bad[len(bad) // 2] ^= 0x40
    else:
        del bad[len(bad) // 2:]
    obj.write_bytes(bytes(bad))
    try:
        d = c.new_dir()
        proc = c.restore("--to-end", "--data-dir", str(d))
        assert proc.returncode == 5, proc.stderr
        assert obj.name in proc.stderr
        assert not d.exists() or not any(d.iterdir())
        out = d.parent / "seg"
        fetched = c.dbcrate("wal-fetch", "pitr", third, str(out), "--identity",
                            str(c.identity))
        assert fetched.returncode > 125, fetched.stderr
        assert not out.exists()
        missing = c.dbcrate("wal-fetch", "pitr", "00000001000000FF000000FF", str(out),
                            "--identity", str(c.identity))
        assert missing.returncode == 9
    finally:
        obj.write_bytes(kept)


def test_same_segment_twice_and_conflicts(pitr_cluster: PitrFactory) -> None:
    """Pushing an archived segment again stores nothing new; other content under its name
    or a segment of another cluster (system identifier in the page header) is refused and
    nothing is overwritten."""
    c = pitr_cluster(17)
    c.dbcrate("backup", "pitr", check=True)
    name = c.switch_and_wait()
    [obj] = c.wal_objects(name)
    before = obj.read_bytes()
    work = c.new_dir().parent / "pg_wal"
    work.mkdir()
    c.chown(work)
    seg = work / name
    c.dbcrate("wal-fetch", "pitr", name, str(seg), "--identity", str(c.identity), check=True)
    assert c.dbcrate("wal-push", "pitr", str(seg)).returncode == 0
    assert c.wal_objects(name) == [obj]
    data = bytearray(seg.read_bytes())
    data[-100] ^= 0x01
    seg.write_bytes(bytes(data))
    other = c.dbcrate("wal-push", "pitr", str(seg))
    assert other.returncode not in (0, 9), other.stderr
    assert "other content" in other.stderr
    data[-100] ^= 0x01
    data[24] ^= 0x01  # xlp_sysid: another database system's segment
    seg.write_bytes(bytes(data))
    foreign = c.dbcrate("wal-push", "pitr", str(seg))
    assert foreign.returncode not in (0, 9), foreign.stderr
    assert "database system" in foreign.stderr
    assert c.wal_objects(name) == [obj]
    assert obj.read_bytes() == before


def test_target_down_keeps_the_segment(pitr_cluster: PitrFactory) -> None:
    """With the target unwritable wal-push fails and pg_wal keeps the segment; once the
    target is back the segment is archived and the archive has no gap."""
    c = pitr_cluster(17)
    c.dbcrate("backup", "pitr", check=True)
    tl_dir = c.store / "pitr" / "wal" / "00000001"
    mode = tl_dir.stat().st_mode
    failed_before = c.sql("SELECT failed_count FROM pg_stat_archiver")[0][0]
    seg = c.segment_now()
    tl_dir.chmod(0o500)
    try:
        c.sql("SELECT pg_logical_emit_message(false, 'test', 'x'), pg_switch_wal()")
        c.wait(lambda: c.sql("SELECT failed_count FROM pg_stat_archiver")[0][0]
               > failed_before, "failed archive_command")
        assert (c.server.data_dir / "pg_wal" / seg).exists()
        assert not c.wal_objects(seg)
    finally:
        tl_dir.chmod(mode)
    c.switch_and_wait()
    assert c.wal_objects(seg)
    assert c.dbcrate("wal", "verify", "pitr").returncode == 0


def test_refusals_and_the_copy_archives_nothing(pitr_cluster: PitrFactory) -> None:
    """An extra tablespace is refused; a non-empty D is refused (exit 7); the restored copy
    has archive_mode off."""
    c = pitr_cluster(17)
    t = f"t_{uuid.uuid4().hex[:8]}"
    _base_then_rows(c, t)
    full = c.new_dir()
    full.mkdir()
    (full / "something").write_text("x")
    c.chown(full.parent)
    refused = c.restore("--to-end", "--data-dir", str(full))
    assert refused.returncode == 7, refused.stderr
    assert [p.name for p in full.iterdir()] == ["something"]
    d = c.new_dir()
    c.restore_json(c.restore("--to-end", "--data-dir", str(d), "--json"))
    assert c.query_copy(d, "SHOW archive_mode") == [("off",)]
    space = c.new_dir().parent
    c.sql(f"CREATE TABLESPACE ts_{t} LOCATION '{space}'")
    try:
        proc = c.dbcrate("backup", "pitr")
        assert proc.returncode == 3, proc.stderr
        assert "tablespace" in proc.stderr
    finally:
        c.sql(f"DROP TABLESPACE ts_{t}")
