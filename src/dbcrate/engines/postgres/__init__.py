"""PostgreSQL: pg_dump -Fc / pg_restore, tools of the server's major (see docs/engines/postgres.md).

This module only declares the engine's vocabulary; ``engine`` holds the implementation
(imported lazily through ``dbcrate.engines.REGISTRY``).
"""

from __future__ import annotations

#: the job options this engine reads (job keys or the job's ``options`` table);
#: ``dbcrate.config`` accepts exactly the union of every engine's (a test checks it)
OPTION_KEYS: frozenset[str] = frozenset({
    "pg_bin_dir",
    "fetch_tools",
    "cache_dir",
    "globals",
    "staging_dir",
    "schemas",
    "exclude_schemas",
    "tables",
    "exclude_tables",
    "maintenance_db",
    "mode",
    "archive",
    "partial_interval",
    "max_rpo",
})

#: the URL a job gets when it names only a ``database`` (``{db}`` is replaced)
DEFAULT_URL = "postgresql://localhost:5432/{db}"
