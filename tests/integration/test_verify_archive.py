"""The backup-time row counter (engines/postgres/archive.py) against real ``pg_dump -Fc -Z0``
archives of majors 14 and 18: exact counts per table and large objects, whatever the
chunking, including rows that look like COPY's end marker; anything else stops counting
without stopping the stream."""

from __future__ import annotations

import json
import os
import subprocess

import pytest

from dbcrate.engines.postgres.archive import RowCounter
from dbcrate.sandbox import load_sample
from tests.servers.postgres import PgServerFactory, new_db_name

EDGE = ("CREATE TABLE edge (t text); INSERT INTO edge VALUES (E'a\\\\.'), (E'\\\\.'), "
        "(E'x\\ny'), (NULL), (E'\\\\.'), (repeat('z', 2565)), (repeat('q', 9)); "
        "CREATE TABLE nocols (); INSERT INTO nocols DEFAULT VALUES; "
        "INSERT INTO nocols DEFAULT VALUES")


def _archive(pg_server_factory: PgServerFactory, major: int) -> tuple[bytes, dict[str, int],
                                                                       int]:
    server = pg_server_factory(major)
    name = new_db_name("a")
    server.create_database(name)
    try:
        load_sample(server.url(name), password=server.password, scale=10)
        server.psql(EDGE, db=name)
        dump = subprocess.run(
            [str(server.bin_dir / "pg_dump"), "-Fc", "-Z0", "-d", server.url(name)],
            env={**os.environ, "PGPASSWORD": server.password}, capture_output=True,
            check=True).stdout
        tables = server.psql("SELECT n.nspname || '.' || c.relname FROM pg_class c JOIN "
                             "pg_namespace n ON n.oid = c.relnamespace WHERE relkind = 'r' "
                             "AND nspname NOT IN ('pg_catalog', 'information_schema')",
                             db=name)
        counts = {t: server.psql(f'SELECT count(*) FROM {_quoted(t)}', db=name)[0][0]
                  for (t,) in tables}
        [(los,)] = server.psql("SELECT count(*) FROM pg_largeobject_metadata", db=name)
        return dump, counts, los
    finally:
        server.drop_database(name)


def _quoted(dotted: str) -> str:
    schema, table = dotted.split(".", 1)
    return f'"{schema}"."{table}"'


@pytest.mark.parametrize("major", [14, 18])
def test_counts_equal_count_star_whatever_the_chunking(pg_server_factory: PgServerFactory,
                                                       major: int) -> None:
    dump, expected, los = _archive(pg_server_factory, major)
    for size in (1, 2, 3, 5, 6, 7, 64, 4099, 1 << 20):
        counter = RowCounter()
        out = b"".join(counter(dump[i : i + size] for i in range(0, len(dump), size)))
        assert out == dump  # a pass-through stage
        got = {f"{s}.{t}": n for (s, t), n in counter.counts().items()}
        assert got == expected, size
        assert counter.large_objects == los > 0
        stats = json.loads(counter.stats() or b"null")
        assert stats["large_objects"] == los
        assert {f"{t['schema']}.{t['table']}": t["rows"] for t in stats["tables"]} == expected


def test_an_archive_it_cannot_read_stops_counting_not_the_stream() -> None:
    for data in (b"not an archive at all" * 10, b"PGDMP\x01\x0e\x00\x04\x08\x01" + b"\x01" * 50):
        counter = RowCounter()
        assert b"".join(counter(iter([data]))) == data
        assert counter.stats() is None


def test_a_truncated_archive_gives_no_stats(pg_server_factory: PgServerFactory) -> None:
    dump, _, _ = _archive(pg_server_factory, 18)
    counter = RowCounter()
    b"".join(counter(iter([dump[: len(dump) // 2]])))
    assert counter.stats() is None  # cut inside a data block
