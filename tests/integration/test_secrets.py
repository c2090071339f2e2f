"""A canary password never appears in logs, in child processes' argv, in error messages,
or in any file dbcrate writes (backups, manifests, temp files)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.lib.e2e import local_target, make_setup
from tests.lib.procs import ArgvWatcher, files_containing
from tests.servers.postgres import PgDatabase, new_db_name

CANARY = "canary-Pw-5f1e0b9d7c"
WRONG = "canary-Wrong-1b2c3d4e"


@pytest.fixture
def canary_db(pg_db: PgDatabase) -> Iterator[PgDatabase]:
    """The sample db, plus a login role whose password is the canary and ~6 MiB of rows
    so tools run long enough to be seen."""
    with pg_db.server.connect("postgres") as conn:
        conn.execute(f"CREATE ROLE canary LOGIN SUPERUSER PASSWORD '{CANARY}'")
    with pg_db.server.connect(pg_db.name) as conn:
        conn.execute("CREATE TABLE filler AS SELECT i, repeat(md5(i::text), 4) AS t"
                     " FROM generate_series(1, 40000) AS i")
    try:
        yield pg_db
    finally:
        with pg_db.server.connect("postgres") as conn:
            conn.execute("DROP ROLE canary")


@pytest.mark.parametrize("encryption", ["none", "age"])
def test_canary_password_never_leaks(
    tmp_path: Path, canary_db: PgDatabase, encryption: str
) -> None:
    url = canary_db.url.replace("postgres@", "canary@", 1)
    assert "canary@" in url
    setup = make_setup(tmp_path / "cfg", url=url, password=CANARY, compression="none",
                       encryption=encryption, targets=[local_target(tmp_path / "backups")])
    started = time.time()
    restored = new_db_name("canary")
    outputs = []
    with ArgvWatcher() as watcher:
        outputs.append(setup.run("-vv", "backup", "orders", check=True))
        outputs.append(setup.run("-vv", "list", "orders", check=True))
        outputs.append(setup.run("-vv", "restore", "orders", "--latest", "--to",
                                 canary_db.server.url(restored).replace("postgres@", "canary@"),
                                 "--identity", str(setup.identity), check=True))
        bad = make_setup(tmp_path / "bad", url=url, password=WRONG, encryption=encryption,
                         targets=[local_target(tmp_path / "backups")])
        failed = bad.run("-vv", "backup", "orders")
        outputs.append(failed)
    try:
        assert failed.returncode == 8
        assert any(b"pg_dump" in c for c in watcher.seen), "never saw pg_dump run"
        assert any(b"pg_restore" in c for c in watcher.seen), "never saw pg_restore"
        for cmd in watcher.seen:
            assert CANARY.encode() not in cmd and WRONG.encode() not in cmd, cmd
        for proc in outputs:
            for text in (proc.stdout, proc.stderr):
                assert CANARY not in text and WRONG not in text
        assert files_containing(tmp_path / "backups", CANARY.encode(), started) == []
        tmp_hits = files_containing(Path("/tmp"), CANARY.encode(), started)
        assert [h for h in tmp_hits if not h.startswith(str(tmp_path))] == []
        assert canary_db.server.database_exists(restored)
    finally:
        canary_db.server.drop_database(restored)
