"""``dbcrate verify`` of PostgreSQL backups, end to end: real source servers of majors 14
and 18, the real CLI, a disposable server of the backup's major started by verify itself.
After every case nothing is left running (no postgres child of ours, no sandbox
directory under verify_dir)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dbcrate.sandbox import load_sample
from tests.lib.e2e import DBCRATE, Setup, local_target, make_setup
from tests.servers.postgres import PgDatabase, PgServerFactory, new_db_name, sample_db

CHECKS = """
[[backup.jobs.checks]]
name = "some customers"
sql = "SELECT count(*) FROM customers"
between = [1, 1000000]

[[backup.jobs.checks]]
name = "orders present"
sql = "SELECT id FROM orders"
min_rows = 1

[[backup.jobs.checks]]
name = "one mood"
sql = "SELECT 'happy'::text"
equals = "happy"
"""


def _sandbox_dirs(where: Path) -> list[str]:
    return sorted(p.name for p in where.iterdir() if p.name.startswith("dbcrate-pg"))


def _postgres_running_under(where: Path) -> list[int]:
    pids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
            if str(where).encode() in cmd and b"postgres" in cmd:
                pids.append(int(entry))
    return pids


@pytest.fixture(params=[14, 18], ids=["pg14", "pg18"])
def source(request: pytest.FixtureRequest, pg_server_factory: PgServerFactory,
           ) -> Iterator[PgDatabase]:
    with sample_db(pg_server_factory(request.param), f"v{request.param}", scale=20) as db:
        yield db


@pytest.fixture(autouse=True)
def vdir() -> Iterator[Path]:
    """A verify_dir the unprivileged sandbox user can reach (pytest's tmp dirs are 0700);
    it must be empty again after the test."""
    path = Path(tempfile.mkdtemp(prefix="dbcrate-verify-test-"))
    path.chmod(0o755)
    _VDIR[0] = path
    yield path
    left = sorted(p.name for p in path.iterdir())
    shutil.rmtree(path)
    assert left == [], left


_VDIR: list[Path] = [Path("/nonexistent")]


def _setup(tmp_path: Path, db: PgDatabase, extra: str = CHECKS) -> Setup:
    vdir = _VDIR[0]
    setup = make_setup(tmp_path, url=db.url, password=db.password,
                       targets=[local_target(tmp_path / "backups")],
                       job_extra={"verify_dir": str(vdir)})
    with open(setup.config, "a", encoding="utf-8") as f:
        f.write(extra)
    return setup


def _verify(setup: Setup, *extra: str) -> tuple[int, dict[str, Any], str]:
    vdir = _VDIR[0]
    proc = setup.run("verify", "orders", "--latest", "--identity", str(setup.identity),
                     "--json", *extra)
    assert _sandbox_dirs(vdir) == [], "verify left its server directory behind"
    assert _postgres_running_under(vdir) == [], "verify left a server running"
    report = json.loads(proc.stdout) if proc.stdout.strip() else {}
    return proc.returncode, report, proc.stderr


def _by_kind(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in report["checks"]}


def test_a_good_backup_passes_in_a_server_of_its_major(tmp_path: Path, source: PgDatabase,
                                                       ) -> None:
    setup = _setup(tmp_path, source)
    setup.run("backup", "orders", check=True)
    code, report, err = _verify(setup)
    assert code == 0, (report, err)
    assert report["result"] == "pass" and report["reason"] is None
    assert report["failed_at"] is None
    major = source.server.version.split(".")[0]
    assert report["server"].split(".")[0] == major
    checks = _by_kind(report)
    for name in ("integrity", "pg_restore", "foreign_keys", "amcheck", "some customers",
                 "orders present", "one mood"):
        assert checks[name]["status"] == "pass", checks[name]
    assert "B-tree indexes intact" in checks["amcheck"]["detail"]
    assert checks["row_counts"]["status"] == "pass", checks["row_counts"]
    expected = {(t["schema"], t["table"]): t["expected"] for t in report["tables"]}
    for (schema, table), n in expected.items():
        [(real,)] = source.server.psql(f'SELECT count(*) FROM "{schema}"."{table}"',
                                       db=source.name)
        assert n == real, (schema, table)
    assert all(t["restored"] == t["expected"] for t in report["tables"])
    assert ("public", "Order Items") in expected and ("audit", "events") in expected
    assert report["large_objects"]["expected"] == report["large_objects"]["restored"] > 0
    assert report["large_objects"]["restored"] > 0
    assert report["restore_seconds"] is not None and report["restore_seconds"] >= 0
    assert report["job"] == "orders" and report["target"] == "local"
    assert report["backup_id"] == setup.list_json("orders")[0]["id"]


def test_an_unmet_check_fails_with_20_and_an_alarm_check_gives_21(
        tmp_path: Path, pg_server_factory: PgServerFactory) -> None:
    server = pg_server_factory(18)
    db = PgDatabase(server, new_db_name("vc"))
    server.create_database(db.name)
    try:
        load_sample(db.url, password=db.password, scale=5)
        setup = _setup(tmp_path, db, CHECKS + """
[[backup.jobs.checks]]
name = "too many"
sql = "SELECT count(*) FROM customers"
equals = 999999
severity = "alarm"
""")
        setup.run("backup", "orders", check=True)
        code, report, err = _verify(setup)
        assert code == 21, (report, err)
        assert report["result"] == "alarm"
        assert _by_kind(report)["too many"]["status"] == "alarm"
        assert "expected 999999" in _by_kind(report)["too many"]["detail"]
        text = setup.config.read_text().replace('severity = "alarm"', 'severity = "fail"')
        setup.config.write_text(text.replace('sql = "SELECT \'happy\'::text"',
                                             'sql = "SELECT no_such_column FROM customers"'))
        code, report, err = _verify(setup)
        assert code == 20, (report, err)
        assert report["result"] == "fail" and report["failed_at"] == "checks"
        assert "no_such_column" in _by_kind(report)["one mood"]["detail"]
    finally:
        server.drop_database(db.name)


def test_rows_violating_a_changed_check_fail_the_restore(
        tmp_path: Path, pg_server_factory: PgServerFactory) -> None:
    server = pg_server_factory(18)
    db = PgDatabase(server, new_db_name("vk"))
    server.create_database(db.name)
    try:
        server.psql("CREATE FUNCTION ok(int) RETURNS bool LANGUAGE sql IMMUTABLE "
                    "AS 'SELECT true'; CREATE TABLE t (v int CHECK (ok(v))); "
                    "INSERT INTO t SELECT generate_series(1, 50); "
                    "CREATE OR REPLACE FUNCTION ok(int) RETURNS bool LANGUAGE sql IMMUTABLE "
                    "AS 'SELECT $1 > 10'", db=db.name)
        setup = _setup(tmp_path, db, "")
        setup.run("backup", "orders", check=True)
        code, report, err = _verify(setup)
        assert code == 20, (report, err)
        assert report["failed_at"] == "restore"
        assert _by_kind(report)["pg_restore"]["status"] == "fail"
        assert "errors" in report["reason"]
        [t] = [t for t in report["tables"] if t["table"] == "t"]
        assert (t["expected"], t["restored"]) == (50, 0)
        rows = _by_kind(report)["row_counts"]
        assert rows["status"] == "fail" and "50 at backup time, 0 restored" in rows["detail"]
    finally:
        server.drop_database(db.name)


@pytest.mark.parametrize("part", ["dump", "stats"])
def test_a_flipped_byte_fails_at_integrity_before_any_server(
        tmp_path: Path, pg_server_factory: PgServerFactory, part: str) -> None:
    server = pg_server_factory(18)
    db = PgDatabase(server, new_db_name("vf"))
    server.create_database(db.name)
    try:
        load_sample(db.url, password=db.password, scale=2)
        setup = _setup(tmp_path, db, "")
        setup.run("backup", "orders", check=True)
        [obj] = [p for p in (tmp_path / "backups").rglob("*") if p.is_file()
                 and p.name.endswith(".age") and ("-stats." in p.name) == (part == "stats")]
        data = bytearray(obj.read_bytes())
        data[len(data) // 2] ^= 0x01
        obj.write_bytes(bytes(data))
        code, report, err = _verify(setup)
        assert code == 20, (report, err)
        assert report["failed_at"] == "integrity" and report["server"] is None
        assert report["restore_seconds"] is None
        assert [c["kind"] for c in report["checks"]] == ["integrity"]
        assert obj.name in report["reason"]
    finally:
        server.drop_database(db.name)


def test_sigterm_mid_restore_leaves_nothing(tmp_path: Path,
                                            pg_server_factory: PgServerFactory) -> None:
    server = pg_server_factory(18)
    db = PgDatabase(server, new_db_name("vs"))
    server.create_database(db.name)
    try:
        load_sample(db.url, password=db.password, scale=50)
        setup = _setup(tmp_path, db, "")
        setup.run("backup", "orders", check=True)
        vdir = _VDIR[0]
        proc = subprocess.Popen(
            [DBCRATE, "--config", str(setup.config), "verify", "orders", "--latest",
             "--identity", str(setup.identity)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        while not _restoring(proc.pid) and proc.poll() is None:
            time.sleep(0.02)
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 143, err
        assert _sandbox_dirs(vdir) == []
        assert _postgres_running_under(vdir) == []
    finally:
        server.drop_database(db.name)


def _restoring(pid: int) -> bool:
    """Whether ``pid`` has a pg_restore child (the restore has begun)."""
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1 : stat.rindex(")")]
            if comm == "pg_restore" and int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
                return True
    return False


def test_row_drop_alarm_records_history_chain_and_prune(
        tmp_path: Path, pg_server_factory: PgServerFactory) -> None:
    server = pg_server_factory(18)
    db = PgDatabase(server, new_db_name("vr"))
    server.create_database(db.name)
    try:
        server.psql("CREATE TABLE big (id int PRIMARY KEY); "
                    "INSERT INTO big SELECT generate_series(1, 100)", db=db.name)
        setup = _setup(tmp_path, db, """
[[backup.jobs.checks]]
name = "enough rows"
sql = "SELECT count(*) FROM big"
min_rows = 1
""")
        setup.run("backup", "orders", check=True)
        code, first, err = _verify(setup)
        assert code == 0, (first, err)
        assert _by_kind(first)["row_drop"]["status"] == "skip"
        server.psql("DELETE FROM big WHERE id > 20", db=db.name)
        setup.run("backup", "orders", check=True)
        code, second, err = _verify(setup)
        assert code == 21, (second, err)
        assert second["result"] == "alarm" and second["failed_at"] is None
        drop = _by_kind(second)["row_drop"]
        assert drop["status"] == "alarm" and "100 -> 20 (-80%)" in drop["detail"], drop
        [big] = [t for t in second["tables"] if t["table"] == "big"]
        assert (big["expected"], big["restored"], big["previous"]) == (20, 20, 100)
        assert second["previous"] == first["backup_id"]

        store = tmp_path / "backups"
        recs = sorted(store.rglob("*.verify.json"))
        assert len(recs) == 2 and first["record"] != second["record"]
        for rec in recs:
            text = rec.read_text()
            for private in ("big", "SELECT", "public", "FROM"):
                assert private not in text, (private, text)
            assert '"name": "enough rows"' in text
        body = json.loads((store / second["record"]).read_text())
        assert body["previous"] and body["mac"] and body["result"] == "alarm"

        hist = setup.run("verify", "orders", "--history", "--json",
                         "--identity", str(setup.identity))
        assert hist.returncode == 0, hist.stderr
        h = json.loads(hist.stdout)
        assert h["chain"] == "ok" and len(h["days"]) == 14
        assert h["days"][-1]["result"] == "alarm" and h["days"][0]["result"] == "none"
        assert h["last"]["backup_id"] == second["backup_id"]

        first_rec = store / first["record"]
        first_rec.write_text(first_rec.read_text().replace('"pass"', '"fail"'))
        hist = setup.run("verify", "orders", "--history", "--json")
        assert hist.returncode == 5, hist.stderr
        h = json.loads(hist.stdout)
        assert h["chain"] == "broken" and h["broken_at"] == first["record"]
        assert "Traceback" not in hist.stderr

        text = setup.config.read_text().replace("[[backup.jobs]]",
                                                "[[backup.jobs]]\nretention = { daily = 1 }")
        setup.config.write_text(text)
        setup.run("prune", "orders", check=True)
        assert sorted(p.name for p in store.rglob("*.verify.json")) == [
            Path(second["record"]).name]
    finally:
        server.drop_database(db.name)


def test_rto_alarm_and_a_writing_check_fails_read_only(
        tmp_path: Path, pg_server_factory: PgServerFactory) -> None:
    server = pg_server_factory(18)
    db = PgDatabase(server, new_db_name("vt"))
    server.create_database(db.name)
    try:
        load_sample(db.url, password=db.password, scale=2)
        setup = _setup(tmp_path, db, "")
        text = setup.config.read_text().replace(
            "[[backup.jobs]]", '[[backup.jobs]]\nverify_rto_alarm = "0.001s"')
        setup.config.write_text(text)
        setup.run("backup", "orders", check=True)
        code, report, err = _verify(setup)
        assert code == 21, (report, err)  # no restore takes under a millisecond
        assert _by_kind(report)["rto"]["status"] == "alarm"
        # verify never connects to the job's database: point the job nowhere
        text = text.replace(db.url, "postgresql://nobody@127.0.0.1:1/nowhere")
        text = text.replace("[[backup.jobs]]", '[[backup.jobs]]\nverify_check_timeout = "1s"')
        setup.config.write_text(text.replace('"0.001s"', '"1d"') + """
[[backup.jobs.checks]]
name = "writes"
sql = "DELETE FROM customers RETURNING id"
min_rows = 0

[[backup.jobs.checks]]
name = "slow"
sql = "SELECT pg_sleep(30)"
min_rows = 1
""")
        assert "127.0.0.1:1/nowhere" in setup.config.read_text()
        code, report, err = _verify(setup)
        assert code == 20, (report, err)
        assert _by_kind(report)["rto"]["status"] == "pass"
        writes = _by_kind(report)["writes"]
        assert writes["status"] == "fail" and "read-only" in writes["detail"], writes
        slow = _by_kind(report)["slow"]  # verify_check_timeout = "1s"
        assert slow["status"] == "fail" and "statement timeout" in slow["detail"], slow
    finally:
        server.drop_database(db.name)


def test_globals_are_applied_first_and_owners_kept(
        tmp_path: Path, pg_server_factory: PgServerFactory) -> None:
    server = pg_server_factory(18)
    db = PgDatabase(server, new_db_name("vg"))
    role = new_db_name("owner")
    server.create_database(db.name)
    try:
        server.psql(f"CREATE ROLE {role} LOGIN PASSWORD 'pw-{role}'")
        server.psql(f"CREATE TABLE owned (id int PRIMARY KEY); ALTER TABLE owned OWNER TO "
                    f"{role}; GRANT SELECT ON owned TO {role}; "
                    "INSERT INTO owned SELECT generate_series(1, 7)", db=db.name)
        setup = _setup(tmp_path, db, f"""
[[backup.jobs.checks]]
name = "owner kept"
sql = "SELECT tableowner FROM pg_tables WHERE tablename = 'owned'"
equals = "{role}"
""")
        text = setup.config.read_text().replace("[[backup.jobs]]",
                                                "[[backup.jobs]]\nglobals = true", 1)
        setup.config.write_text(text)
        setup.run("backup", "orders", check=True)
        code, report, err = _verify(setup)
        assert code == 0, (report, err)
        checks = _by_kind(report)
        assert checks["globals"]["status"] == "pass"
        assert checks["owner kept"]["status"] == "pass", checks["owner kept"]
        assert checks["pg_restore"]["status"] == "pass"
    finally:
        server.drop_database(db.name)
        server.psql(f"DROP ROLE IF EXISTS {role}")


def test_the_disposable_server_cannot_read_the_identity(
        tmp_path: Path, pg_server_factory: PgServerFactory) -> None:
    server = pg_server_factory(18)
    db = PgDatabase(server, new_db_name("vi"))
    server.create_database(db.name)
    try:
        setup = _setup(tmp_path, db, "")
        with open(setup.config, "a", encoding="utf-8") as f:
            f.write(f'\n[[backup.jobs.checks]]\nname = "steal"\n'
                    f'sql = "SELECT pg_read_file(\'{setup.identity}\')"\nmin_rows = 1\n')
        setup.run("backup", "orders", check=True)
        code, report, err = _verify(setup)
        steal = _by_kind(report)["steal"]
        assert code == 20 and steal["status"] == "fail", (report, err)
        assert "AGE-SECRET-KEY" not in json.dumps(report) + err
        if os.geteuid() == 0:  # the server runs as dbcrate-sandbox
            assert "Permission denied" in steal["detail"], steal
    finally:
        server.drop_database(db.name)


def test_count_rows_snapshot_counts_in_the_dumps_snapshot_and_verifies(
        tmp_path: Path, pg_server_factory: PgServerFactory) -> None:
    server = pg_server_factory(18)
    db = PgDatabase(server, new_db_name("vn"))
    server.create_database(db.name)
    try:
        load_sample(db.url, password=db.password, scale=2)
        server.psql("CREATE TABLE parent (v int); CREATE TABLE child () INHERITS (parent); "
                    "INSERT INTO parent VALUES (1), (2); INSERT INTO child VALUES (3)",
                    db=db.name)
        setup = make_setup(tmp_path, url=db.url, password=db.password, encryption="none",
                           compression="none", targets=[local_target(tmp_path / "backups")],
                           job_extra={"verify_dir": str(_VDIR[0]), "count_rows": "snapshot"})
        setup.run("backup", "orders", check=True)
        [part] = list((tmp_path / "backups").rglob("*-stats.json"))
        stats = json.loads(part.read_text())
        assert stats["method"] == "snapshot-count"
        counted = {(t["schema"], t["table"]): t["rows"] for t in stats["tables"]}
        assert counted[("public", "parent")] == 2 and counted[("public", "child")] == 1
        for (schema, table), n in counted.items():
            [(real,)] = server.psql(f'SELECT count(*) FROM ONLY "{schema}"."{table}"',
                                    db=db.name)
            assert n == real, (schema, table)
        [(los,)] = server.psql("SELECT count(*) FROM pg_largeobject_metadata", db=db.name)
        assert stats["large_objects"] == los
        proc = setup.run("verify", "orders", "--latest", "--json")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert _by_kind(json.loads(proc.stdout))["row_counts"]["status"] == "pass"
    finally:
        server.drop_database(db.name)
