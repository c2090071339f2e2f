"""PITR restore of a damaged base object: the base is read once, its digests are checked
while it is unpacked, and a mismatch stops the restore before pg_verifybackup or the
server runs (exit 5, naming the object; nothing left in the data directory). A base
carries the WAL from its start to its stop (``-X fetch`` under a temporary slot)."""

from __future__ import annotations

import io
import re
import subprocess
import tarfile
import uuid

from tests.servers.pitr import JOB, PitrCluster, PitrFactory


def test_damaged_base_stops_the_restore_before_the_server(pitr_cluster: PitrFactory) -> None:
    c = pitr_cluster(17)
    c.sql(f"CREATE TABLE t_{uuid.uuid4().hex[:8]} (id int)")
    c.dbcrate("backup", JOB, check=True)
    base_id = [b for b in c.dbcrate_list() if b["kind"] == "base"][-1]["id"]
    [obj] = [p for p in c.store.joinpath(JOB).rglob(f"*-{base_id}.*")
             if not p.name.endswith((".manifest.json", ".sig"))]
    kept = obj.read_bytes()
    flipped = bytearray(kept)
    flipped[len(kept) // 2] ^= 0x40
    try:
        # one pass: the decryption meets a flipped byte before the stored digest's end
        for bad, says in ((bytes(flipped), "damaged"), (kept[:-100], "truncated")):
            obj.write_bytes(bad)
            d = c.new_dir()
            proc = c.restore("--to-end", "--base", base_id, "--data-dir", str(d))
            assert proc.returncode == 5, proc.stderr
            assert obj.name in proc.stderr and says in proc.stderr, proc.stderr
            assert "pg_verifybackup" not in proc.stderr
            assert not d.exists()
            assert list(d.parent.iterdir()) == []  # no spool or server socket left either
    finally:
        obj.write_bytes(kept)


def _base_members(c: PitrCluster) -> list[str]:
    """The member names of the newest base, read back with ``dbcrate cat``."""
    proc = subprocess.run(
        [*c.prefix, "env", "-i", *(f"{k}={v}" for k, v in c.env().items()), c.python, "-m",
         "dbcrate", "--config", str(c.config), "cat", JOB, "--latest", "--identity",
         str(c.identity)], capture_output=True, check=True, cwd=c.dir, timeout=300)
    with tarfile.open(fileobj=io.BytesIO(proc.stdout)) as tar:
        return tar.getnames()


def _segments(names: list[str]) -> list[str]:
    return [n for n in names if re.fullmatch(r"(\./)?pg_wal/[0-9A-F]{24}", n)]


def test_the_base_carries_its_wal_and_leaves_no_slot(pitr_cluster: PitrFactory) -> None:
    c = pitr_cluster(17)
    c.dbcrate("backup", JOB, check=True)
    base = [b for b in c.dbcrate_list() if b["kind"] == "base"][-1]
    # -X fetch: the segments from the base's start to its stop are in the base itself
    start = c.sql("SELECT pg_walfile_name(%s::pg_lsn)", (base["start_lsn"],))[0][0]
    assert any(n.endswith(f"pg_wal/{start}") for n in _segments(_base_members(c)))
    # the temporary slot that held them ended with the backup's session
    assert c.sql("SELECT slot_name FROM pg_replication_slots"
                 " WHERE slot_name LIKE 'dbcrate_base_%'") == []


def test_without_a_free_slot_the_base_is_taken_without_wal(pitr_cluster: PitrFactory) -> None:
    c = pitr_cluster(17)
    with c.server.connect() as holder:
        free = holder.execute(
            "SELECT current_setting('max_replication_slots')::int"
            " - (SELECT count(*) FROM pg_replication_slots)").fetchone()
        assert free is not None
        for i in range(int(free[0])):
            holder.execute("SELECT pg_create_physical_replication_slot(%s, true, true)",
                           (f"test_fill_{i}",))
        proc = c.dbcrate("backup", JOB)
        assert proc.returncode == 0, proc.stderr
        assert "-X none" in proc.stderr, proc.stderr
    assert _segments(_base_members(c)) == []
    d = c.new_dir()
    # the base's own timeline: an earlier test may have archived a TL2 fork of another base
    c.restore_json(c.restore("--to-end", "--timeline", "current", "--data-dir", str(d),
                             "--json"))
