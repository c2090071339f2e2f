"""PITR (docs/pitr.md): base backups + the WAL archive of a real cluster whose
archive_command is ``dbcrate wal-push``, restored to a time, an LSN and the end."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbcrate.sandbox.privileges import free_port
from tests.lib.e2e import DBCRATE, ROOT
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
    c.dbcrate("backup", "pitr", check=True)
    [listed] = [b for b in c.dbcrate_list() if b["kind"] == "base"][-1:]
    assert listed["timeline"] == 1 and listed["start_lsn"] and listed["stop_lsn"]
    assert listed["tool"] == "pg_basebackup"
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
        read = c.dbcrate("wal", "verify", "pitr", "--read", "--identity", str(c.identity),
                         "--json")
        assert read.returncode == 5, read.stdout + read.stderr
        assert [d["name"] for d in json.loads(read.stdout)[0]["damaged"]] == [third]
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
    last = c.switch_and_wait()
    assert c.wal_objects(seg)
    assert c.dbcrate("wal", "verify", "pitr").returncode == 0
    status = c.dbcrate("status", "--json")
    assert status.returncode == 0, status.stdout + status.stderr
    [job] = json.loads(status.stdout)["jobs"]
    assert job["wal"]["mode"] == "command" and job["wal"]["gaps"] == []
    assert job["wal"]["last_segment"] >= last and job["wal"]["lag_bytes"] is not None


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
    logical = c.dbcrate("restore", "pitr", "--latest")
    assert logical.returncode == 2 and "--pitr" in logical.stderr
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


def _now(conn_or_cluster: Any) -> str:
    query = ("SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC',"
             " 'YYYY-MM-DD\"T\"HH24:MI:SS.US')")
    if isinstance(conn_or_cluster, PitrCluster):
        return str(conn_or_cluster.sql(query)[0][0])
    return str(conn_or_cluster.execute(query.encode()).fetchone()[0])


def test_timeline_after_resume_archiving(pitr_cluster: PitrFactory) -> None:
    """A ``--resume-archiving`` copy archives its timeline's history and segments; a later
    restore to a time on it has its rows, one before the fork follows timeline 1; the
    archive verifies clean."""
    c = pitr_cluster(17)
    t = f"t_{uuid.uuid4().hex[:8]}"
    c.sql(f"CREATE TABLE {t} (id int)")
    c.dbcrate("backup", "pitr", check=True)
    c.sql(f"INSERT INTO {t} VALUES (1)")
    before_fork = _now(c)
    c.sql(f"INSERT INTO {t} VALUES (10)")
    c.switch_and_wait()
    d = c.new_dir()
    result = c.restore_json(c.restore("--to-time", before_fork, "--resume-archiving",
                                      "--data-dir", str(d), "--json"))
    tli = result["new_timeline"]
    assert tli and tli > 1
    with c.copy_server(d) as conn:  # the copy now is the job's server
        conn.execute(f"INSERT INTO {t} VALUES (2)".encode())
        on_new = _now(conn)
        conn.execute(f"INSERT INTO {t} VALUES (3)".encode())
        conn.execute(b"SELECT pg_logical_emit_message(false, 'test', 'x')")
        closed = conn.execute(b"SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
        c.wait(lambda: (conn.execute(b"SELECT last_archived_wal FROM pg_stat_archiver")
                        .fetchone()[0] or "") >= closed, "archived segment on the new timeline")
    assert c.wal_objects(f"{tli:08X}.history")
    assert c.wal_objects(closed)
    later = c.new_dir()
    c.restore_json(c.restore("--to-time", on_new, "--data-dir", str(later), "--json"))
    assert c.query_copy(later, f"SELECT id FROM {t} ORDER BY id") == [(1,), (2,)]
    earlier = c.new_dir()
    c.restore_json(c.restore("--to-time", before_fork, "--data-dir", str(earlier), "--json"))
    assert c.query_copy(earlier, f"SELECT id FROM {t} ORDER BY id") == [(1,)]
    proc = c.dbcrate("wal", "verify", "pitr", "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_prune_keeps_what_the_oldest_kept_base_needs(pitr_cluster: PitrFactory) -> None:
    """prune (keeping only the newest base) deletes the WAL before that base's start and
    nothing newer (--dry-run lists it first); the base still restores to the present."""
    c = pitr_cluster(18)
    t = f"t_{uuid.uuid4().hex[:8]}"
    c.sql(f"CREATE TABLE {t} (id int)")
    c.dbcrate("backup", "pitr", check=True)
    c.sql(f"INSERT INTO {t} VALUES (1)")
    c.switch_and_wait()
    old_segment = c.switch_and_wait()
    c.dbcrate("backup", "pitr", check=True)
    c.sql(f"INSERT INTO {t} VALUES (2)")
    c.switch_and_wait()
    one_base = c.dir / "keep-one.toml"
    one_base.write_text(c.config.read_text().replace(
        "[backup]\n", "[backup]\nretention = { daily = 1 }\n", 1))
    c.chown(one_base)
    dry = json.loads(c.dbcrate("--config", str(one_base), "prune", "pitr", "--dry-run",
                               "--json", check=True).stdout)
    assert old_segment in dry[0]["wal"]
    assert c.wal_objects(old_segment)
    done = json.loads(c.dbcrate("--config", str(one_base), "prune", "pitr", "--json",
                                check=True).stdout)
    assert done[0]["wal"] == dry[0]["wal"]
    assert not c.wal_objects(old_segment)
    assert len(c.dbcrate_list()) == 1
    assert c.dbcrate("wal", "verify", "pitr").returncode == 0
    d = c.new_dir()
    c.restore_json(c.restore("--to-end", "--data-dir", str(d), "--json"))
    assert c.query_copy(d, f"SELECT id FROM {t} ORDER BY id") == [(1,), (2,)]


def test_restore_by_hand_recipe(pitr_cluster: PitrFactory) -> None:
    """The PITR recipe of docs/restore-by-hand.md, run as written with stock age, zstd,
    tar and the server binaries, restores to a time between two commits."""
    for tool in ("age", "zstd", "tar", "bash"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} not installed (make test installs it)")
    doc = (ROOT / "docs" / "restore-by-hand.md").read_text()
    recipe = doc.split("<!-- pitr-recipe -->\n```sh\n", 1)[1].split("\n```", 1)[0]
    c = pitr_cluster(14)  # one timeline (17's archive has the forked one)
    t = f"t_{uuid.uuid4().hex[:8]}"
    mid, _ = _base_then_rows(c, t)
    d = c.new_dir()
    env = {**c.env(), "STORE": str(c.store), "JOB": "pitr", "IDENTITY": str(c.identity),
           "D": str(d), "PGBIN": str(c.server.bin_dir),
           "TARGET_TIME": mid.replace("T", " ") + "+00:00"}
    proc = subprocess.run([*c.prefix, "env", "-i", *(f"{k}={v}" for k, v in env.items()),
                           "bash", "-c", recipe], capture_output=True, text=True, timeout=300,
                          check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert c.query_copy(d, f"SELECT id FROM {t} ORDER BY id") == [(1,)]


def test_stream_keeps_what_was_committed_before_a_crash(tmp_path: Path) -> None:
    """archive = "stream": the agent's pg_receivewal ships the open segment as .partial
    every partial_interval; a row committed (and streamed) before the server is killed
    (immediate, no segment switch) is back after --to-end."""
    c = PitrCluster(17, archive_command=False, archive="stream", partial_interval="1s")
    c.start()
    agent = c.dbcrate_popen("-v", "agent", "--state-dir", str(c.dir / "state"))
    try:
        t = f"t_{uuid.uuid4().hex[:8]}"
        c.wait(lambda: c.sql("SELECT count(*) FROM pg_stat_replication")[0][0],
               "WAL stream of the agent")
        c.sql(f"CREATE TABLE {t} (id int)")
        c.dbcrate("backup", "pitr", check=True)
        kept = c.dir / "state" / "pitr" / "pitr.backup_manifest"  # for incremental bases
        assert b'"WAL-Ranges"' in kept.read_bytes()
        c.sql(f"INSERT INTO {t} VALUES (1)")
        lsn = c.sql("SELECT pg_current_wal_insert_lsn()")[0][0]
        c.wait(lambda: c.sql("SELECT bool_or(flush_lsn >= %s::pg_lsn) FROM pg_stat_replication",
                             (str(lsn),))[0][0], "row streamed and flushed by pg_receivewal")
        flushed = time.time()
        seg = c.segment_now()
        partial = f"{seg}.partial"
        c.wait(lambda: any(p.stat().st_mtime > flushed for p in c.wal_objects(partial)),
               ".partial shipped after the row")
        c.server._run(["pg_ctl", "-D", str(c.server.data_dir), "-m", "immediate",
                       "-w", "stop"])
        d = c.new_dir()
        c.restore_json(c.restore("--to-end", "--data-dir", str(d), "--json"))
        assert c.query_copy(d, f"SELECT id FROM {t} ORDER BY id") == [(1,)]
    finally:
        agent.terminate()
        _, err = agent.communicate(timeout=60)
        print(err[-3000:])  # shown when the test fails
        c.stop()


def test_the_stream_slot_holds_wal_from_its_creation(pitr_cluster: PitrFactory) -> None:
    """The agent's slot reserves WAL when it is made (``pg_receivewal --create-slot`` does
    not: until pg_receivewal's first status report such a slot holds nothing and can never
    be invalidated); an inactive slot holding nothing is made anew; one in use is kept."""
    from dbcrate.engines.base import Connection
    from dbcrate.engines.postgres.physical.settings import ensure_slot

    c = pitr_cluster(17)
    conn = Connection(f"postgresql://dbcrate_repl@127.0.0.1:{c.server.port}/postgres",
                      c.password, {})
    held = lambda: c.sql("SELECT restart_lsn IS NOT NULL FROM pg_replication_slots "  # noqa: E731
                         "WHERE slot_name = 'dbcrate_probe'")
    try:
        ensure_slot(conn, "dbcrate_probe")
        assert held() == [(True,)]
        before = c.sql("SELECT restart_lsn FROM pg_replication_slots "
                       "WHERE slot_name = 'dbcrate_probe'")
        c.switch_and_wait()
        ensure_slot(conn, "dbcrate_probe")  # present and holding: kept as it is
        assert c.sql("SELECT restart_lsn FROM pg_replication_slots "
                     "WHERE slot_name = 'dbcrate_probe'") == before
        c.sql("SELECT pg_drop_replication_slot('dbcrate_probe')")
        c.sql("SELECT pg_create_physical_replication_slot('dbcrate_probe')")  # no reserve
        assert held() == [(False,)]
        ensure_slot(conn, "dbcrate_probe")
        assert held() == [(True,)]
    finally:
        c.sql("SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots "
              "WHERE slot_name = 'dbcrate_probe'")


@pytest.mark.skipif(os.geteuid() != 0, reason="the server's user is chosen only as root")
def test_restore_as_root_runs_the_server_as_the_owner(pitr_cluster: PitrFactory) -> None:
    """As root, the recovery server runs as the owner of D's parent (PostgreSQL refuses
    root); D ends up owned by that user."""
    c = pitr_cluster(18)
    t = f"t_{uuid.uuid4().hex[:8]}"
    mid, _ = _base_then_rows(c, t)
    d = c.new_dir()
    proc = subprocess.run(
        [DBCRATE, "--config", str(c.config), "restore", "pitr", "--pitr", "--to-time", mid,
         "--data-dir", str(d), "--identity", str(c.identity), "--json"],
        capture_output=True, text=True, timeout=300, check=False,
        env={**os.environ, "PYTHONPATH": c.pythonpath})
    c.restore_json(proc)
    assert c.owner is not None and d.stat().st_uid == c.owner.pw_uid
    assert c.query_copy(d, f"SELECT id FROM {t} ORDER BY id") == [(1,)]


@pytest.mark.parametrize("action", ["shutdown", "pause", "keep-running"])
def test_target_actions(pitr_cluster: PitrFactory, action: str) -> None:
    """--target-action shutdown: the server stops at the target (D stays in recovery, to be
    started with a restore_command or promoted); pause: it is left running, paused;
    --keep-running: promoted and left running on 127.0.0.1:P."""
    c = pitr_cluster(14)
    t = f"t_{uuid.uuid4().hex[:8]}"
    mid, _ = _base_then_rows(c, t)
    d = c.new_dir()
    port = free_port()
    how = ["--keep-running", "--port", str(port)] if action == "keep-running" else [
        "--target-action", action]
    c.restore_json(c.restore("--to-time", mid, *how, "--data-dir", str(d), "--json"))
    pid = d / "postmaster.pid"
    if action == "shutdown":
        assert (d / "recovery.signal").exists() and not pid.exists()
        return
    try:
        assert pid.exists()
        if action == "keep-running":
            with psycopg.connect(host="127.0.0.1", port=port, user=c.server.user,
                                 password=c.server.password, dbname="postgres") as conn:
                assert conn.execute(f"SELECT id FROM {t}".encode()).fetchall() == [(1,)]
        else:
            assert (d / "recovery.signal").exists()
    finally:
        subprocess.run([*c.prefix, str(c.server.bin_dir / "pg_ctl"), "-D", str(d), "-m",
                        "fast", "-w", "stop"], check=False, capture_output=True)


def test_wal_check(pitr_cluster: PitrFactory) -> None:
    """``wal check``: the settings are right, a switched segment reaches every target, the
    exact archive_command is printed; without the GRANT for pg_switch_wal it says so."""
    c = pitr_cluster(18)
    denied = c.dbcrate("wal", "check", "pitr")
    assert denied.returncode == 8 and "GRANT EXECUTE ON FUNCTION pg_switch_wal()" in \
        denied.stderr
    c.sql("GRANT EXECUTE ON FUNCTION pg_switch_wal() TO dbcrate_repl")
    try:
        out = c.dbcrate("wal", "check", "pitr", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        doc = json.loads(out.stdout)
        assert doc["ok"] and doc["problems"] == [] and c.wal_objects(doc["switched"])
        assert f"wal-push pitr %p --config {c.config}" in doc["archive_command"]
    finally:
        c.sql("REVOKE EXECUTE ON FUNCTION pg_switch_wal() FROM dbcrate_repl")
