"""PostgreSQL fixtures: real servers from dbcrate.sandbox (binaries cached outside the repo).

- ``pg_server_factory(major=17)`` (session): a started ``TempPostgres`` of that major, one
  per major per session, stopped at the end.
- ``pg_server`` (session): ``pg_server_factory(17)``.
- ``pg_db`` (function): a fresh database on ``pg_server`` loaded with the sample schema
  (``dbcrate.sandbox.sample``); a ``PgDatabase`` with ``.name``, ``.url`` (no password),
  ``.password``, ``.server``, ``.connection()`` (an engine ``Connection``),
  ``.checksums()``. Dropped afterwards.
- ``pg_db_name`` (function): a fresh, not-yet-existing database name on ``pg_server``,
  dropped afterwards if something created it.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest

from dbcrate.engines import Connection
from dbcrate.sandbox import TempPostgres, load_sample, table_checksums

PgServerFactory = Callable[..., TempPostgres]


@dataclass
class PgDatabase:
    """One database on a sandbox server."""

    server: TempPostgres
    name: str

    @property
    def url(self) -> str:
        return self.server.url(self.name)

    @property
    def password(self) -> str:
        return self.server.password

    def connection(self, **options: Any) -> Connection:
        """An engine ``Connection`` to this database (``options`` as given)."""
        return Connection(url=self.url, password=self.password, options=options)

    def checksums(self) -> dict[str, str]:
        return table_checksums(self.url, password=self.password)

    def exists(self) -> bool:
        return self.server.database_exists(self.name)


def new_db_name(prefix: str = "t") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:12]}"


@pytest.fixture(scope="session")
def pg_server_factory() -> Iterator[PgServerFactory]:
    servers: dict[int, TempPostgres] = {}

    def get(major: int = 17) -> TempPostgres:
        if major not in servers:
            servers[major] = TempPostgres(major=major).start()
        return servers[major]

    try:
        yield get
    finally:
        for server in servers.values():
            server.stop()


@pytest.fixture(scope="session")
def pg_server(pg_server_factory: PgServerFactory) -> TempPostgres:
    return pg_server_factory(17)


@contextmanager
def sample_db(server: TempPostgres, prefix: str = "sample", **sample: Any) -> Iterator[PgDatabase]:
    """A new database on ``server`` loaded with the sample data (``load_sample`` options),
    dropped afterwards."""
    db = PgDatabase(server, new_db_name(prefix))
    server.create_database(db.name)
    try:
        load_sample(db.url, password=db.password, **sample)
        yield db
    finally:
        server.drop_database(db.name)


@pytest.fixture
def pg_db(pg_server: TempPostgres) -> Iterator[PgDatabase]:
    with sample_db(pg_server) as db:
        yield db


@pytest.fixture
def pg_db_name(pg_server: TempPostgres) -> Iterator[str]:
    name = new_db_name("target")
    try:
        yield name
    finally:
        pg_server.drop_database(name)
