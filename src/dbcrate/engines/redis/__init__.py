"""Redis: redis-cli --rdb and restore by copy, inplace or datadir (see docs/engines/redis.md).

This module only declares the engine's vocabulary; ``engine`` holds the implementation
(imported lazily through ``dbcrate.engines.REGISTRY``).
"""

from __future__ import annotations

#: the job options this engine reads (job keys or the job's ``options`` table);
#: ``dbcrate.config`` accepts exactly the union of every engine's (a test checks it)
OPTION_KEYS: frozenset[str] = frozenset({
    "redis_cli_path",
    "redis_server_path",
    "tls",
    "tls_cacert",
    "tls_cert",
    "tls_key",
    "tls_sni",
    "tls_insecure",
    "stop_command",
    "start_command",
    "rdb_path",
    "start_timeout",
    "temp_dir",
    "zero_sync_delay",
})

#: the URL a job gets when it names only a ``database`` (``{db}`` is replaced)
DEFAULT_URL = "redis://localhost:6379/0"
