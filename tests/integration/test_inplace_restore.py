"""In-place ``restore --clean`` (PostgreSQL): restored into a sibling database and swapped
in only when complete, through the real CLI against a real PostgreSQL 17 server.

The schema is pagila-like: a partitioned table with a primary key (which the old in-place
``pg_restore --clean`` could not drop), a materialized view, a domain, an enum, triggers,
foreign keys and indexes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from dbcrate.engines import RestoreOptions, open_engine
from dbcrate.engines.postgres.swap import MAX_IDENT, sibling_names
from dbcrate.sandbox import TempPostgres, table_checksums
from tests.lib.e2e import Setup, local_target, make_setup, restore
from tests.servers.postgres import PgDatabase, new_db_name

PAGILA = """
CREATE DOMAIN year AS integer CHECK (VALUE >= 1901 AND VALUE <= 2155);
CREATE TYPE mpaa_rating AS ENUM ('G', 'PG', 'PG-13', 'R', 'NC-17');
CREATE FUNCTION last_updated() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN NEW.last_update = '2020-01-01'; RETURN NEW; END $$;
CREATE TABLE actor (actor_id serial PRIMARY KEY, first_name text NOT NULL,
    last_name text NOT NULL, last_update timestamptz NOT NULL DEFAULT '2020-01-01');
CREATE INDEX idx_actor_last_name ON actor (last_name);
CREATE TRIGGER last_updated BEFORE UPDATE ON actor FOR EACH ROW EXECUTE FUNCTION last_updated();
CREATE TABLE film (film_id serial PRIMARY KEY, title text NOT NULL, release_year year,
    rating mpaa_rating DEFAULT 'G', fulltext tsvector);
CREATE INDEX film_fulltext_idx ON film USING gist (fulltext);
CREATE TABLE film_actor (actor_id int NOT NULL REFERENCES actor ON UPDATE CASCADE,
    film_id int NOT NULL REFERENCES film, PRIMARY KEY (actor_id, film_id));
CREATE TABLE payment (payment_id serial, film_id int NOT NULL REFERENCES film,
    amount numeric(5, 2) NOT NULL CHECK (amount >= 0), payment_date timestamptz NOT NULL,
    PRIMARY KEY (payment_date, payment_id)) PARTITION BY RANGE (payment_date);
CREATE TABLE payment_p2022_01 PARTITION OF payment
    FOR VALUES FROM ('2022-01-01 00:00+00') TO ('2022-02-01 00:00+00');
CREATE TABLE payment_p2022_02 PARTITION OF payment
    FOR VALUES FROM ('2022-02-01 00:00+00') TO ('2022-03-01 00:00+00');
CREATE INDEX idx_payment_film ON payment (film_id);
CREATE FUNCTION no_negative() RETURNS trigger LANGUAGE plpgsql
    AS $$ BEGIN IF NEW.amount < 0 THEN RAISE 'negative'; END IF; RETURN NEW; END $$;
CREATE TRIGGER payment_check BEFORE INSERT ON payment FOR EACH ROW EXECUTE FUNCTION no_negative();
INSERT INTO actor (first_name, last_name)
    SELECT 'first ' || i, 'last ' || (i % 17) FROM generate_series(1, 200) AS i;
INSERT INTO film (title, release_year, rating, fulltext)
    SELECT 'film ' || i, 1990 + i % 30, (enum_range(NULL::mpaa_rating))[1 + i % 5],
           to_tsvector('english', 'a film about number ' || i)
    FROM generate_series(1, 100) AS i;
INSERT INTO film_actor SELECT 1 + i % 200, 1 + i % 100 FROM generate_series(0, 299) AS i
    ON CONFLICT DO NOTHING;
INSERT INTO payment (film_id, amount, payment_date)
    SELECT 1 + i % 100, (i % 1000) / 10.0,
           timestamptz '2022-01-01 00:00+00' + i * interval '47 minutes'
    FROM generate_series(0, 1500) AS i;
CREATE MATERIALIZED VIEW sales_by_rating AS
    SELECT f.rating, count(*) AS n, sum(p.amount) AS total
    FROM payment p JOIN film f USING (film_id) GROUP BY f.rating WITH DATA;
CREATE UNIQUE INDEX sales_by_rating_idx ON sales_by_rating (rating);
"""

#: what the test counts (user schemas only)
_COUNTS = r"""
WITH ns AS (SELECT oid FROM pg_namespace
            WHERE nspname <> 'information_schema' AND nspname NOT LIKE 'pg\_%')
SELECT
  (SELECT count(*) FROM pg_class WHERE relnamespace IN (SELECT oid FROM ns)
     AND relkind IN ('r', 'p')),
  (SELECT count(*) FROM pg_class WHERE relnamespace IN (SELECT oid FROM ns)
     AND relkind IN ('i', 'I')),
  (SELECT count(*) FROM pg_constraint WHERE connamespace IN (SELECT oid FROM ns)),
  (SELECT count(*) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
     WHERE c.relnamespace IN (SELECT oid FROM ns) AND NOT t.tgisinternal),
  (SELECT count(*) FROM pg_class WHERE relnamespace IN (SELECT oid FROM ns) AND relkind = 'm'),
  (SELECT count(*) FROM pg_type t WHERE typnamespace IN (SELECT oid FROM ns)
     AND typtype IN ('e', 'd')),
  (SELECT count(*) FROM pg_proc WHERE pronamespace IN (SELECT oid FROM ns))
"""
_COUNT_NAMES = ("tables", "indexes", "constraints", "triggers", "matviews", "types", "functions")

#: database-level attributes that must survive the swap
_ATTRIBUTES = """
SELECT pg_get_userbyid(d.datdba), pg_encoding_to_char(d.encoding), d.datcollate, d.datctype,
       d.datconnlimit, (SELECT array_agg(a ORDER BY a) FROM unnest(d.datacl::text[]) a),
       shobj_description(d.oid, 'pg_database'),
       (SELECT array_agg(coalesce(pg_get_userbyid(nullif(s.setrole, 0)), '') || ' '
                         || array_to_string(s.setconfig, ';') ORDER BY 1)
        FROM pg_db_role_setting s WHERE s.setdatabase = d.oid)
FROM pg_database d WHERE d.datname = %s
"""


def fingerprint(server: TempPostgres, name: str) -> dict[str, Any]:
    """Per-table checksums, the matview's content and object counts of database ``name``."""
    out: dict[str, Any] = dict(table_checksums(server.url(name), password=server.password))
    [counts] = server.psql(_COUNTS, name)
    out["counts"] = dict(zip(_COUNT_NAMES, counts, strict=True))
    if server.psql("SELECT to_regclass('public.sales_by_rating')", name) != [(None,)]:
        out["matview"] = server.psql("SELECT rating::text, n, total::text "
                                     "FROM sales_by_rating ORDER BY 1", name)
    return out


def siblings(server: TempPostgres, name: str) -> list[str]:
    rows = server.psql("SELECT datname FROM pg_database WHERE datname LIKE '%dbcrate_%'")
    return [r[0] for r in rows if r[0].startswith(name[:20])]


@pytest.fixture
def pagila(pg_server: TempPostgres) -> Iterator[PgDatabase]:
    db = PgDatabase(pg_server, new_db_name("pagila"))
    pg_server.create_database(db.name)
    try:
        with pg_server.connect(db.name) as conn:
            conn.execute(PAGILA.encode())
        yield db
    finally:
        pg_server.drop_database(db.name)
        for name in siblings(pg_server, db.name):
            pg_server.drop_database(name)


def setup_for(tmp: Path, db: PgDatabase, **kw: Any) -> Setup:
    return make_setup(tmp / "cfg", url=db.url, password=db.password,
                      targets=[local_target(tmp / "backups")], **kw)


def change(db: PgDatabase) -> None:
    """Changes after the backup that a restore must undo (including on a partition)."""
    db.server.psql("INSERT INTO payment (film_id, amount, payment_date) "
                   "VALUES (1, 9.99, '2022-01-15 00:00+00'); DELETE FROM actor WHERE actor_id > 190"
                   " AND actor_id NOT IN (SELECT actor_id FROM film_actor);"
                   " DROP MATERIALIZED VIEW sales_by_rating; CREATE TABLE extra (i int);"
                   " DROP TRIGGER last_updated ON actor", db.name)


@pytest.mark.parametrize("jobs", ["1", "3"])
def test_clean_in_place_replaces_the_whole_database(
    tmp_path: Path, pagila: PgDatabase, jobs: str
) -> None:
    server = pagila.server
    want = fingerprint(server, pagila.name)
    # two triggers, the one on the partitioned table cloned to its two partitions
    assert want["counts"]["matviews"] == 1 and want["counts"]["triggers"] == 4
    setup = setup_for(tmp_path, pagila)
    setup.run("backup", check=True)
    change(pagila)
    assert fingerprint(server, pagila.name) != want

    refused = restore(setup, "--jobs", jobs, check=False)
    assert refused.returncode == 7 and "not empty" in refused.stderr
    proc = restore(setup, "--clean", "--jobs", jobs, check=False)
    assert proc.returncode == 0, proc.stderr
    assert fingerprint(server, pagila.name) == want
    assert siblings(server, pagila.name) == []
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_corruption_detected_at_the_end_leaves_the_original(
    tmp_path: Path, pagila: PgDatabase, jobs: str
) -> None:
    """Unencrypted and uncompressed, so a flipped data byte is only caught by the final
    digest check, after pg_restore has seen every byte."""
    server = pagila.server
    setup = setup_for(tmp_path, pagila, compression="none", encryption="none")
    setup.run("backup", check=True)
    change(pagila)
    before = fingerprint(server, pagila.name)
    [b] = setup.list_json("orders")
    obj = tmp_path / "backups" / b["key"]
    raw = bytearray(obj.read_bytes())
    at = raw.index(b"first 100")
    raw[at] ^= 0x20  # 'first' -> 'First': still a valid archive
    obj.write_bytes(bytes(raw))
    proc = restore(setup, "--clean", "--jobs", jobs, check=False)
    assert proc.returncode == 5, proc.stderr
    assert fingerprint(server, pagila.name) == before
    assert siblings(server, pagila.name) == []


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_pg_restore_error_halfway_leaves_the_original(
    tmp_path: Path, pagila: PgDatabase, jobs: str
) -> None:
    """The backup has a table owned by a role that is gone at restore time: pg_restore
    fails at ``ALTER TABLE ... OWNER TO``, after the first objects were created."""
    server = pagila.server
    role = new_db_name("gone")
    server.psql(f"CREATE ROLE {role}; ALTER TABLE film_actor OWNER TO {role}", pagila.name)
    setup = setup_for(tmp_path, pagila)
    setup.run("backup", check=True)
    server.psql(f"ALTER TABLE film_actor OWNER TO CURRENT_USER; DROP ROLE {role}", pagila.name)
    change(pagila)
    before = fingerprint(server, pagila.name)
    proc = restore(setup, "--clean", "--jobs", jobs, check=False)
    assert proc.returncode == 7, proc.stderr
    assert "was not changed" in proc.stderr and role in proc.stderr
    hint = proc.stderr.split("hint:", 1)[1]
    assert "--no-owner" in hint and "--clean" not in hint
    assert fingerprint(server, pagila.name) == before
    assert siblings(server, pagila.name) == []


def attributes(server: TempPostgres, name: str) -> tuple[Any, ...]:
    [row] = server.psql(_ATTRIBUTES, params=(name,))
    return tuple(row)


@pytest.mark.parametrize("jobs", [(), ("--jobs", "2")], ids=["streamed", "jobs"])
def test_database_level_attributes_survive(
    tmp_path: Path, pg_server: TempPostgres, jobs: tuple[str, ...]
) -> None:
    owner, reader = new_db_name("owner"), new_db_name("reader")
    db = PgDatabase(pg_server, new_db_name("attrs"))
    pg_server.psql(f"CREATE ROLE {owner}; CREATE ROLE {reader}")
    pg_server.psql(f"CREATE DATABASE {db.name} OWNER {owner} TEMPLATE template0 "
                   "ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' CONNECTION LIMIT 40")
    try:
        for stmt in (
            f"ALTER DATABASE {db.name} SET work_mem = '7MB'",
            f"ALTER DATABASE {db.name} SET search_path = \"$user\", public, \"Odd, Schema\"",
            f"ALTER ROLE {reader} IN DATABASE {db.name} SET statement_timeout = '5s'",
            f"REVOKE ALL ON DATABASE {db.name} FROM PUBLIC",
            f"GRANT CONNECT, TEMP ON DATABASE {db.name} TO {reader}",
            f"COMMENT ON DATABASE {db.name} IS 'the ''attrs'' database'",
        ):
            pg_server.psql(stmt)
        pg_server.psql("CREATE TABLE t (i int, s text); INSERT INTO t VALUES (1, 'caf\u00e9')",
                       db.name)
        want_attrs = attributes(pg_server, db.name)
        want = db.checksums()
        setup = setup_for(tmp_path, db)
        setup.run("backup", check=True)
        # changed after the backup: the backup's own settings, grants and comment win
        pg_server.psql("INSERT INTO t VALUES (2, 'later')", db.name)
        for stmt in (f"ALTER DATABASE {db.name} SET work_mem = '9MB'",
                     f"ALTER DATABASE {db.name} SET lock_timeout = '1s'",
                     f"GRANT CREATE ON DATABASE {db.name} TO {reader}",
                     f"COMMENT ON DATABASE {db.name} IS 'changed'"):
            pg_server.psql(stmt)
        assert attributes(pg_server, db.name) != want_attrs
        proc = restore(setup, "--clean", *jobs, check=False)
        assert proc.returncode == 0, proc.stderr
        warnings = [line for line in proc.stderr.splitlines()
                    if "WARNING" in line.upper() and "not authenticated" not in line]
        assert not warnings, proc.stderr
        assert db.checksums() == want
        assert attributes(pg_server, db.name) == want_attrs
        assert want_attrs[0] == owner and want_attrs[1] == "LATIN1"
        assert want_attrs[4] == 40 and want_attrs[6] == "the 'attrs' database"
        assert siblings(pg_server, db.name) == []
    finally:
        pg_server.drop_database(db.name)
        pg_server.psql(f"DROP ROLE IF EXISTS {reader}; DROP ROLE IF EXISTS {owner}")


def test_other_sessions_refused_by_name_then_terminated(
    tmp_path: Path, pagila: PgDatabase
) -> None:
    server = pagila.server
    want = fingerprint(server, pagila.name)
    setup = setup_for(tmp_path, pagila)
    setup.run("backup", check=True)
    change(pagila)
    before = fingerprint(server, pagila.name)
    with server.connect(pagila.name, application_name="held-by-test") as held:
        pid = held.info.backend_pid
        proc = restore(setup, "--clean", check=False)
        assert proc.returncode == 7, proc.stderr
        assert f"pid {pid}" in proc.stderr and "held-by-test" in proc.stderr
        assert "--terminate-sessions" in proc.stderr
        assert fingerprint(server, pagila.name) == before

        proc = restore(setup, "--clean", "--terminate-sessions", "--keep-old", check=False)
        assert proc.returncode == 0, proc.stderr
        with pytest.raises(psycopg.OperationalError):
            held.execute("SELECT 1")
    assert fingerprint(server, pagila.name) == want
    [old] = siblings(server, pagila.name)
    assert old.startswith(pagila.name + "_dbcrate_old_")
    assert fingerprint(server, old) == before  # kept, and connectable again
    server.drop_database(old)


def test_a_long_name_restores_in_place(tmp_path: Path, pg_server: TempPostgres) -> None:
    db = PgDatabase(pg_server, "l" * 50 + new_db_name("")[:13])
    assert len(db.name) == MAX_IDENT
    pg_server.create_database(db.name)
    try:
        pg_server.psql("CREATE TABLE t AS SELECT 1 AS i", db.name)
        want = db.checksums()
        setup = setup_for(tmp_path, db)
        setup.run("backup", check=True)
        pg_server.psql("DROP TABLE t; CREATE TABLE u (j int)", db.name)
        # a sibling a killed restore left: named in a warning, not touched
        stale = sibling_names(db.name, "deadbeef")[0]
        pg_server.create_database(stale)
        proc = restore(setup, "--clean", "--jobs", "2", check=False)
        assert proc.returncode == 0, proc.stderr
        assert f"found {stale}, left by an earlier restore" in proc.stderr
        assert db.checksums() == want
        assert siblings(pg_server, db.name) == [stale]
    finally:
        pg_server.drop_database(db.name)
        pg_server.drop_database(sibling_names(db.name, "deadbeef")[0])


MAJORS = (14, 15, 16, 17, 18)
_LOCALE_COLUMNS = ("datlocprovider", "daticulocale", "datlocale", "daticurules")


def locale_of(server: TempPostgres, name: str) -> dict[str, Any]:
    [(row,)] = server.psql("SELECT to_jsonb(d) FROM pg_database d WHERE datname = %s",
                           params=(name,))
    keep = ("datcollate", "datctype", "encoding", "datconnlimit", *_LOCALE_COLUMNS)
    return {k: v for k, v in row.items() if k in keep}


def _create_with_provider(server: TempPostgres, name: str, major: int) -> str:
    """Create ``name`` with the most unusual locale provider the major supports (ICU from
    15 if the build has it, builtin from 17); returns the provider used."""
    tries = []
    if major >= 17:
        tries.append(("builtin", "LOCALE_PROVIDER builtin BUILTIN_LOCALE 'C.UTF-8' "
                      "ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"))
    if major >= 15:
        tries.append(("icu", "LOCALE_PROVIDER icu ICU_LOCALE 'und-u-ks-level2' "
                      "ENCODING 'UTF8' LC_COLLATE 'C' LC_CTYPE 'C'"))
    tries.append(("libc", "ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C'"))
    for provider, options in tries:
        try:
            server.psql(f"CREATE DATABASE {name} TEMPLATE template0 {options} "
                        "CONNECTION LIMIT 12")
            return provider
        except psycopg.Error:
            continue
    raise AssertionError("no database could be created")


@pytest.mark.parametrize("major", MAJORS, ids=[f"pg{m}" for m in MAJORS])
def test_locale_and_provider_kept_on_every_major(
    tmp_path: Path, pg_server_factory: Any, major: int
) -> None:
    server: TempPostgres = pg_server_factory(major)
    db = PgDatabase(server, new_db_name(f"loc{major}"))
    provider = _create_with_provider(server, db.name, major)
    try:
        server.psql("CREATE TABLE t AS SELECT i, 'row ' || i AS s FROM generate_series(1, 50) i",
                    db.name)
        want, want_locale = db.checksums(), locale_of(server, db.name)
        setup = setup_for(tmp_path, db)
        setup.run("backup", check=True)
        server.psql("DELETE FROM t WHERE i > 10; CREATE TABLE u (j int)", db.name)
        proc = restore(setup, "--clean", check=False)
        assert proc.returncode == 0, proc.stderr
        assert db.checksums() == want
        assert locale_of(server, db.name) == want_locale, provider
        assert siblings(server, db.name) == []
    finally:
        server.drop_database(db.name)


@pytest.mark.parametrize("jobs", [1, 2])
def test_interrupt_while_restoring_drops_the_sibling(pagila: PgDatabase, jobs: int) -> None:
    """An interrupt (the SIGTERM handler raises a KeyboardInterrupt subclass in the main
    thread) from the stream midway: the sibling goes, the original stays."""
    server = pagila.server
    data = b"".join(open_engine("postgres", pagila.connection()).dump())
    change(pagila)
    before = fingerprint(server, pagila.name)

    def chunks() -> Iterator[bytes]:
        yield data[: len(data) // 2]
        raise KeyboardInterrupt

    engine = open_engine("postgres", pagila.connection())
    with pytest.raises(KeyboardInterrupt):
        engine.restore(chunks(), RestoreOptions(clean=True, jobs=jobs))
    assert fingerprint(server, pagila.name) == before
    assert siblings(server, pagila.name) == []
