"""Which keys each config table accepts: one list per engine and per target type.

The config layer sits below engines and storage, so the lists live here (docs/config.md
and docs/engines/*.md document each key; the module that reads a key must be listed).
A key outside its table's list is a config error naming the file and the key.
"""

from __future__ import annotations

#: keys whose value is a secret: each may instead be given as ``KEY_file``
SECRET_KEYS = (
    "password", "secret_key", "access_key", "encryption_key", "session_token",
    "private_key_passphrase", "account_key", "sas_token", "connection_string",
)

#: engine -> the job options it reads (as job keys or in the job's ``options`` table)
ENGINE_OPTIONS: dict[str, frozenset[str]] = {
    "postgres": frozenset({
        "pg_bin_dir", "fetch_tools", "cache_dir", "globals", "staging_dir",
        "schemas", "exclude_schemas", "tables", "exclude_tables", "maintenance_db",
        # physical mode (PITR; config/pitr.py, docs/pitr.md)
        "mode", "archive", "partial_interval", "max_rpo",
    }),
    "mysql": frozenset({"dump_options", "dump_tool", "client_tool"}),
    "redis": frozenset({
        "redis_cli_path", "redis_server_path", "tls", "tls_cacert", "tls_cert", "tls_key",
        "tls_sni", "tls_insecure", "stop_command", "start_command", "rdb_path",
        "start_timeout", "temp_dir", "zero_sync_delay",
    }),
    "mongodb": frozenset({
        "mongodump_path", "mongorestore_path", "mongosh_path", "version_probe", "temp_dir",
    }),
}
#: engine -> the URL a job gets when it names only a ``database`` (``{db}``)
DEFAULT_URLS: dict[str, str] = {
    "postgres": "postgresql://localhost:5432/{db}",
    "mysql": "mysql://localhost:3306/{db}",
    "redis": "redis://localhost:6379/0",
    "mongodb": "mongodb://localhost:27017/{db}",
}
#: every engine option of any engine
ALL_ENGINE_OPTIONS: frozenset[str] = frozenset().union(*ENGINE_OPTIONS.values())

#: restore flag -> the engines it applies to (other engines refuse it, naming the engine)
RESTORE_FLAGS: dict[str, tuple[str, ...]] = {
    "--mode": ("redis",),
    "--path": ("redis",),
    "--jobs": ("postgres",),
    "--globals": ("postgres",),
    "--no-owner": ("postgres",),
    "--no-privileges": ("postgres",),
    "--terminate-sessions": ("postgres",),
    "--keep-old": ("postgres", "mysql"),
}

#: target type -> the keys its storage module reads (besides ``type``).
TARGET_KEYS: dict[str, frozenset[str]] = {
    "local": frozenset({"path"}),
    "s3": frozenset({
        "bucket", "endpoint", "region", "prefix", "access_key", "secret_key",
        "session_token", "path_style", "part_size", "storage_class", "checksums",
        "verify_tls", "ca_bundle", "connect_timeout", "read_timeout", "max_attempts",
        "abort_timeout", "max_parts",
    }),
    "sftp": frozenset({
        "host", "port", "user", "path", "private_key_file", "private_key_passphrase",
        "password", "connect_timeout", "known_hosts_file", "host_key_fingerprint",
        "max_attempts",
    }),
    "gcs": frozenset({
        "bucket", "prefix", "credentials_file", "endpoint", "storage_class", "chunk_size",
        "max_attempts",
    }),
    "azure": frozenset({
        "container", "prefix", "endpoint", "block_size", "tier", "connection_string",
        "account_name", "account_key", "sas_token", "max_attempts",
    }),
}


#: the ``[agent]`` table (config_agent.py, docs/config.md, docs/agent.md)
AGENT_KEYS = frozenset({"state_dir", "concurrency", "jitter", "grace_period", "timezone",
                        "metrics_file", "log_format", "verify_identity_file", "identity_file",
                        "connections"})
#: one ``[agent.connections.NAME]``: where a restore dispatched by the control plane may write
CONNECTION_KEYS = frozenset({"engine", "url", "password", "password_file"})
#: one ``[[notify]]`` entry (``url`` is a secret: ``url_file`` and ``${ENV}`` work)
NOTIFY_KEYS = frozenset({"url", "url_file", "on", "jobs"})


def with_file_variants(keys: frozenset[str]) -> frozenset[str]:
    """``keys`` plus ``KEY_file`` for each secret key among them."""
    return keys | {f"{k}_file" for k in keys if k in SECRET_KEYS}


def engines_reading(key: str) -> list[str]:
    """The engines that read the job option ``key`` (empty if none does)."""
    return [e for e, keys in ENGINE_OPTIONS.items() if key in keys]


#: characters a job name may not hold: it is the first part of every object key
_NAME_FORBIDDEN = ("/", "\\", "..")


def job_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be a job name (``None`` if it can)."""
    if not name:
        return "is empty"
    if name == ".":
        return "is '.'"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "holds a control character"
    for bad in _NAME_FORBIDDEN:
        if bad in name:
            return f"holds {bad!r} (job names are the first part of every object key)"
    if name != name.strip():
        return "starts or ends with whitespace"
    return None
