"""MySQL/MariaDB: mariadb-dump/mysqldump and the client (see docs/engines/mysql.md).

This module only declares the engine's vocabulary; ``engine`` holds the implementation
(imported lazily through ``dbcrate.engines.REGISTRY``).
"""

from __future__ import annotations

#: the job options this engine reads (job keys or the job's ``options`` table);
#: ``dbcrate.config`` accepts exactly the union of every engine's (a test checks it)
OPTION_KEYS: frozenset[str] = frozenset({
    "dump_options",
    "dump_tool",
    "client_tool",
})

#: the URL a job gets when it names only a ``database`` (``{db}`` is replaced)
DEFAULT_URL = "mysql://localhost:3306/{db}"
