"""MongoDB: mongodump/mongorestore --archive (see docs/engines/mongodb.md).

This module only declares the engine's vocabulary; ``engine`` holds the implementation
(imported lazily through ``dbcrate.engines.REGISTRY``).
"""

from __future__ import annotations

#: the job options this engine reads (job keys or the job's ``options`` table);
#: ``dbcrate.config`` accepts exactly the union of every engine's (a test checks it)
OPTION_KEYS: frozenset[str] = frozenset({
    "mongodump_path",
    "mongorestore_path",
    "mongosh_path",
    "version_probe",
    "temp_dir",
})

#: the URL a job gets when it names only a ``database`` (``{db}`` is replaced)
DEFAULT_URL = "mongodb://localhost:27017/{db}"
