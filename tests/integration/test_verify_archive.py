"""The backup-time row counter (engines/postgres/archive.py) against real ``pg_dump -Fc -Z0``
archives of majors 14 and 18: exact counts per table and large objects, whatever the
chunking, including rows that look like COPY's end marker, on the C chunk walk and on the
Python path; anything else stops counting without stopping the stream."""

from __future__ import annotations

import json
import os
import random
import subprocess
from collections.abc import Iterator

import pytest

from dbcrate.engines.postgres import archive
from dbcrate.engines.postgres.archive import RowCounter
from dbcrate.sandbox import load_sample
from tests.servers.postgres import PgServerFactory, new_db_name

EDGE = ("CREATE TABLE edge (t text); INSERT INTO edge VALUES (E'a\\\\.'), (E'\\\\.'), "
        "(E'x\\ny'), (NULL), (E'\\\\.'), (repeat('z', 2565)), (repeat('q', 9)); "
        "CREATE TABLE nocols (); INSERT INTO nocols DEFAULT VALUES; "
        "INSERT INTO nocols DEFAULT VALUES")


#: rows of every width: short, ~300 bytes (md5/jsonb/text), > 64 KiB, COPY lines of
#: exactly 255 ... 65537 bytes, empty strings, NULLs, no rows at all; large objects
WIDTHS = """
CREATE TABLE mixed (id int, t text, j jsonb);
INSERT INTO mixed SELECT g, CASE g % 6 WHEN 0 THEN '' WHEN 1 THEN md5(g::text)
    WHEN 2 THEN repeat(md5(g::text), 9) WHEN 3 THEN NULL WHEN 4 THEN 'x'
    ELSE left(repeat(md5(g::text), 4), g % 113) END,
    CASE WHEN g % 4 = 0 THEN jsonb_build_object('k', g, 'v', md5(g::text)) END
    FROM generate_series(1, 2500) g;
INSERT INTO mixed SELECT g, repeat(md5(g::text), 2048 + g), NULL FROM generate_series(1, 4) g;
CREATE TABLE app (id bigint, account text, token text, doc jsonb, tag bytea);
INSERT INTO app SELECT g, md5('a' || g % 500), md5(g::text || 'salt'),
    jsonb_build_object('user', jsonb_build_object('id', g % 500, 'email',
        md5(g::text) || '@example.com'), 'note', substr(md5((g * 13)::text), 1, 8 + g % 24)),
    substr(sha256(int8send(g)), 1, 4 + g % 13) FROM generate_series(1, 1500) g;
CREATE TABLE exact (t text);
INSERT INTO exact SELECT repeat('a', n - 1)
    FROM unnest(ARRAY[1, 2, 10, 255, 256, 257, 65535, 65536, 65537]) n;
CREATE TABLE empties (t text); INSERT INTO empties SELECT '' FROM generate_series(1, 700);
CREATE TABLE nothing (a int);
SELECT lo_from_bytea(0, ''), lo_from_bytea(0, 'x'::bytea),
    lo_from_bytea(0, decode(repeat('ab', 50000), 'hex'));
"""


def _archive(pg_server_factory: PgServerFactory, major: int,
             sql: str | None = None) -> tuple[bytes, dict[str, int], int]:
    """A ``-Fc -Z0`` dump of a database loaded with ``sql`` (else the sample and EDGE), the
    ``count(*)`` of each of its tables and its number of large objects."""
    server = pg_server_factory(major)
    name = new_db_name("a")
    server.create_database(name)
    try:
        if sql is None:
            load_sample(server.url(name), password=server.password, scale=10)
            sql = EDGE
        server.psql(sql, db=name)
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


def _pieces(dump: bytes, how: int | str) -> Iterator[bytes]:
    if isinstance(how, int):
        yield from (dump[i : i + how] for i in range(0, len(dump), how))
        return
    rng, pos = random.Random(how), 0
    while pos < len(dump):  # random sizes, 1 byte to ~200 KiB, mostly small
        step = max(1, int(rng.expovariate(1 / rng.choice((2, 50, 3000, 200_000)))))
        yield dump[pos : pos + step]
        pos += step


@pytest.mark.parametrize("native", [True, False], ids=["c", "python"])
def test_rows_of_every_width_counted_on_both_paths(pg_server_factory: PgServerFactory,
                                                   native: bool) -> None:
    """The C walk (where built: make test builds it) and the Python fallback agree with
    ``count(*)`` on rows short, ~300 bytes, over 64 KiB, empty, like COPY's end marker, and
    large objects."""
    if native:
        assert archive.NATIVE_WALK is not None, "the C chunk walk is not built"
    dump, expected, los = _archive(pg_server_factory, 18, WIDTHS + EDGE)
    assert expected["public.mixed"] == 2504 and expected["public.nothing"] == 0
    for how in (1, 7, 4096, 1 << 20, "split-1", "split-2", "split-3"):
        counter = RowCounter(native=native)
        assert b"".join(counter(_pieces(dump, how))) == dump
        assert counter.problem is None
        got = {f"{s}.{t}": n for (s, t), n in counter.counts().items()}
        assert got == expected, how
        assert counter.large_objects == los == 3
        stats = json.loads(counter.stats() or b"null")
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
