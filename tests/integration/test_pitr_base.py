"""PITR restore of a damaged base object: the base is read once, its digests are checked
while it is unpacked, and a mismatch stops the restore before pg_verifybackup or the
server runs (exit 5, naming the object; nothing left in the data directory)."""

from __future__ import annotations

import uuid

from tests.servers.pitr import JOB, PitrFactory


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
