"""``restore --jobs N``: pg_restore -j from a private temp file that is always removed."""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbcrate.engines import Engine, RestoreOptions, open_engine
from dbcrate.errors import RestoreFailed
from tests.lib.e2e import local_target, make_setup
from tests.servers.postgres import PgDatabase, new_db_name


@pytest.fixture
def private_tmp(tmp_path: Path) -> Path:
    """A directory given to the engine as its ``staging_dir``."""
    d = tmp_path / "tmp"
    d.mkdir()
    return d


def test_jobs_round_trip_and_no_temp_file_left(tmp_path: Path, pg_db: PgDatabase) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    setup = make_setup(tmp_path / "cfg", url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")])
    setup.run("backup", check=True)
    name = new_db_name("par")
    try:
        setup.run("restore", "orders", "--latest", "--jobs", "2", "--to",
                  pg_db.server.url(name), "--identity", str(setup.identity),
                  env={"TMPDIR": str(tmp)}, check=True)
        assert PgDatabase(pg_db.server, name).checksums() == pg_db.checksums()
        assert list(tmp.iterdir()) == []
    finally:
        pg_db.server.drop_database(name)

    # a flipped byte in the stored object: refused, nothing created, nothing left in TMPDIR
    [b] = setup.list_json("orders")
    obj = tmp_path / "backups" / b["key"]
    data = bytearray(obj.read_bytes())
    data[len(data) // 2] ^= 0x01
    obj.write_bytes(bytes(data))
    proc = setup.run("restore", "orders", "--latest", "--jobs", "2", "--to",
                     pg_db.server.url(name), "--identity", str(setup.identity),
                     env={"TMPDIR": str(tmp)})
    assert proc.returncode == 5, proc.stderr
    assert not pg_db.server.database_exists(name)
    assert list(tmp.iterdir()) == []


def staging_engine(db: PgDatabase, staging: Path) -> Engine:
    """An engine for ``db`` that stages ``--jobs`` restores under ``staging``."""
    return open_engine("postgres", db.connection(staging_dir=str(staging)))


def _dump(db: PgDatabase) -> bytes:
    return b"".join(open_engine("postgres", db.connection()).dump())


def _staging_fds(under: Path) -> list[Path]:
    """Our open descriptors of files (named or not) under ``under``."""
    fds = []
    for fd in Path("/proc/self/fd").iterdir():
        try:
            if str(fd.readlink()).startswith(str(under)):
                fds.append(fd)
        except OSError:
            continue
    return fds


def test_staged_file_is_private_and_nameless_while_it_exists(
    pg_db: PgDatabase, pg_db_name: str, private_tmp: Path
) -> None:
    data = _dump(pg_db)
    seen: list[tuple[list[str], int, bool]] = []

    def chunks() -> Iterator[bytes]:
        yield data[:1000]
        [fd] = _staging_fds(private_tmp)
        seen.append(([p.name for p in private_tmp.iterdir()],
                     stat.S_IMODE(fd.stat().st_mode), str(fd.readlink()).endswith("(deleted)")))
        yield data[1000:]

    target = PgDatabase(pg_db.server, pg_db_name)
    staging_engine(target, private_tmp).restore(chunks(), RestoreOptions(jobs=2))
    # no name on disk holds the plaintext, only our descriptor (mode 0600)
    assert seen == [([], 0o600, True)]
    assert target.checksums() == pg_db.checksums()
    assert list(private_tmp.iterdir()) == []
    assert _staging_fds(private_tmp) == []


def test_failing_pg_restore_drops_the_created_database_and_the_temp_file(
    pg_db: PgDatabase, pg_db_name: str, private_tmp: Path
) -> None:
    data = _dump(pg_db)[:20_000]  # a truncated archive: pg_restore fails midway
    target = PgDatabase(pg_db.server, pg_db_name)
    with pytest.raises(RestoreFailed):
        staging_engine(target, private_tmp).restore([data],
                                                             RestoreOptions(jobs=2))
    assert not target.exists()
    assert list(private_tmp.iterdir()) == []


def test_failing_source_touches_nothing_and_leaves_no_temp_file(
    pg_db: PgDatabase, pg_db_name: str, private_tmp: Path
) -> None:
    data = _dump(pg_db)

    def chunks() -> Iterator[bytes]:
        yield data[: len(data) // 2]
        raise OSError("source cut")

    target = PgDatabase(pg_db.server, pg_db_name)
    with pytest.raises(OSError, match="source cut"):
        staging_engine(target, private_tmp).restore(chunks(), RestoreOptions(jobs=2))
    assert not target.exists()
    assert list(private_tmp.iterdir()) == []


def test_failure_into_an_existing_database_leaves_it_as_it_was(
    pg_db: PgDatabase, pg_db_name: str, private_tmp: Path
) -> None:
    """--jobs into an existing database goes through a sibling: a failing pg_restore drops
    the sibling and the target is unchanged."""
    pg_db.server.create_database(pg_db_name)
    pg_db.server.psql("CREATE TABLE kept (i int); INSERT INTO kept VALUES (1), (2)", pg_db_name)
    target = PgDatabase(pg_db.server, pg_db_name)
    before = target.checksums()
    data = _dump(pg_db)[:20_000]
    with pytest.raises(RestoreFailed, match=f"{pg_db_name} was not changed") as info:
        staging_engine(target, private_tmp).restore([data],
                                                    RestoreOptions(jobs=2, clean=True))
    assert pg_db.password not in str(info.value)
    assert "--clean" not in info.value.hint
    assert target.checksums() == before
    names = [r[0] for r in pg_db.server.psql("SELECT datname FROM pg_database")]
    assert not [n for n in names if n.startswith(pg_db_name + "_dbcrate_")]
    assert list(private_tmp.iterdir()) == []
