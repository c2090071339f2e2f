"""The bench's data sets: each builds one database of at least ``size_gb`` GB on disk.

  current  pgbench tables plus a ``docs`` table (text, jsonb, bytea): the foundation's
           bench data, kept so figures stay comparable
  app      application-like rows: md5 hashes, jsonb documents, short bytea (the data the
           foundation's closing note measured at 1.43x)
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable

from dbcrate.sandbox import TempPostgres


def current(pg: TempPostgres, db: str, size_gb: float) -> None:
    """pgbench tables plus a table with text, jsonb and bytea."""
    pg.create_database(db)
    scale = max(1, int(size_gb * 40))
    env = {**os.environ, "PGPASSWORD": pg.password}
    print(f"[{db}] generating: pgbench -i -s {scale} ...", flush=True)
    subprocess.run([str(pg.bin_dir / "pgbench"), "-i", "-q", "-s", str(scale), "-h", pg.host,
                    "-p", str(pg.port), "-U", pg.user, db], env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    rows = int(size_gb * 1_200_000)
    print(f"[{db}] generating: {rows} rows of text/jsonb/bytea ...", flush=True)
    with pg.connect(db) as conn:
        conn.execute(
            "CREATE TABLE docs (id bigint PRIMARY KEY, title text, body jsonb, blob bytea)")
        conn.execute(f"""
            INSERT INTO docs
            SELECT i, 'document ' || i || ' ' || md5(i::text),
                   jsonb_build_object('id', i, 'tags', jsonb_build_array('a' || i % 97, 'b'),
                                      'text', md5((i * 3)::text) || ' lorem ipsum dolor ' ||
                                              md5((i * 5)::text) || ' sit amet ' || i),
                   sha256(int8send(i)) || sha256(int8send(i * 7)) || sha256(int8send(i * 11))
            FROM generate_series(1, {rows}) AS i""")
        conn.execute("VACUUM ANALYZE")


def app(pg: TempPostgres, db: str, size_gb: float) -> None:
    """An application-like table: two md5 hashes, a jsonb document, a short bytea."""
    pg.create_database(db)
    rows = int(size_gb * 1_900_000)
    print(f"[{db}] generating: {rows} application-like rows ...", flush=True)
    with pg.connect(db) as conn:
        conn.execute("""CREATE TABLE events (
            id bigint PRIMARY KEY, account text NOT NULL, token text NOT NULL,
            doc jsonb NOT NULL, tag bytea NOT NULL, at timestamptz NOT NULL)""")
        conn.execute(f"""
            INSERT INTO events
            SELECT i, md5('a' || i % 50000), md5(i::text || 'salt'),
                   jsonb_build_object(
                       'user', jsonb_build_object('id', i % 50000, 'name', 'user ' || i % 50000,
                                                  'email', md5(i::text) || '@example.com'),
                       'items', jsonb_build_array(
                           jsonb_build_object('sku', 'SKU-' || i % 977, 'qty', i % 7 + 1,
                                              'price', (i % 10000) / 100.0),
                           jsonb_build_object('sku', 'SKU-' || i % 331, 'qty', i % 3 + 1,
                                              'price', (i % 2500) / 10.0)),
                       'status', (ARRAY['new', 'paid', 'shipped', 'void'])[i % 4 + 1],
                       'note', substr(md5((i * 13)::text), 1, 8 + i % 24)),
                   substr(sha256(int8send(i)), 1, 4 + i % 13),
                   timestamptz '2026-01-01' + i * interval '7 seconds'
            FROM generate_series(1, {rows}) AS i""")
        conn.execute("VACUUM ANALYZE")


DATASETS: dict[str, Callable[[TempPostgres, str, float], None]] = {
    "current": current, "app": app}


def size_of(pg: TempPostgres, db: str) -> int:
    """The database's size on disk, bytes."""
    with pg.connect(db) as conn:
        row = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert row is not None
    return int(row[0])
