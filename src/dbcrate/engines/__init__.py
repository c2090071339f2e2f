"""Database engines: one Protocol (``engines.base``), one package per implementation, a
lazy registry (an engine's tools and drivers are imported only when it is used).

An engine dumps and restores one database with its native tools, run as subprocesses.
Passwords reach the tools by environment or a private file, never by argv.
"""

from __future__ import annotations

import importlib

from dbcrate.engines.base import (
    Connection,
    Engine,
    EngineFactory,
    Part,
    RestoreOptions,
    SinglePart,
    StatsCounter,
)

#: engine name -> "module:class"; imported on first use
REGISTRY: dict[str, str] = {
    "postgres": "dbcrate.engines.postgres.engine:PostgresEngine",
    "mysql": "dbcrate.engines.mysql.engine:MySQLEngine",
    "redis": "dbcrate.engines.redis.engine:RedisEngine",
    "mongodb": "dbcrate.engines.mongodb.engine:MongoEngine",
}

#: the engine packages, each declaring ``OPTION_KEYS`` and ``DEFAULT_URL``
PACKAGES: dict[str, str] = {name: spec.rsplit(".", 1)[0] for name, spec in REGISTRY.items()}


#: engine name -> "module:class" of its backup-time row counter (a pass-through stage over
#: its dump with ``stats() -> bytes | None``: the backup's ``stats`` part; docs/verify.md)
COUNTERS: dict[str, str] = {
    "postgres": "dbcrate.engines.postgres.archive:RowCounter",
    "mysql": "dbcrate.engines.mysql.counter:InsertCounter",
}




#: engine name -> "module:class" of its ``count_rows = "snapshot"`` counter: built with the
#: engine (whose dump it runs in an exported snapshot), ``count(*)`` per dumped table
SNAPSHOT_COUNTERS: dict[str, str] = {
    "postgres": "dbcrate.engines.postgres.snapshot:SnapshotCounter",
}


def open_counter(engine: str, method: str = "stream",
                 source: Engine | None = None) -> StatsCounter | None:
    """A new row counter for ``engine``'s dump (``method``: ``stream``, or ``snapshot``
    with the ``source`` engine whose dump it wraps), or None if it has none."""
    spec = (SNAPSHOT_COUNTERS if method == "snapshot" else COUNTERS).get(engine)
    if spec is None:
        return None
    module, _, attr = spec.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    counter: StatsCounter = cls(source) if method == "snapshot" else cls()
    return counter


def _load(spec: str) -> EngineFactory:
    module, _, attr = spec.partition(":")
    factory: EngineFactory = getattr(importlib.import_module(module), attr)
    return factory


def open_engine(engine: str, connection: Connection) -> Engine:
    """Build the engine registered as ``engine``. Raises ``KeyError`` for unknown names
    (config validation rejects them first)."""
    return _load(REGISTRY[engine])(connection)


__all__ = [
    "COUNTERS",
    "PACKAGES",
    "REGISTRY",
    "SNAPSHOT_COUNTERS",
    "Connection",
    "Engine",
    "EngineFactory",
    "Part",
    "RestoreOptions",
    "SinglePart",
    "StatsCounter",
    "open_counter",
    "open_engine",
]
