"""PITR (docs/pitr.md): base backups + the WAL archive of a real cluster whose
archive_command is ``dbcrate wal-push``, restored to a time, an LSN and the end."""

from __future__ import annotations

import uuid

import pytest

from tests.servers.pitr import PitrFactory


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
