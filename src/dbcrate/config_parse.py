"""Validation of a decoded TOML mapping into ``Config`` (see docs/config.md)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from dbcrate.config import (
    COMPRESSIONS,
    ENCRYPTIONS,
    ENGINES,
    TARGET_TYPES,
    Config,
    JobConfig,
    Retention,
    TargetConfig,
    decode_key,
    resolve_secrets,
)
from dbcrate.errors import ConfigError

#: keys a [backup] table and a job may both set (the job overrides)
_SHARED_KEYS = {
    "compression", "compression_level", "compress", "encryption", "encrypt",
    "recipients", "encryption_key", "encryption_key_file", "retention", "retention_days",
}
_BACKUP_KEYS = _SHARED_KEYS | {"targets", "jobs"}
#: engine-specific job keys, passed to the engine in ``JobConfig.options`` (each engine
#: module documents and validates its own; docs/config.md lists them)
ENGINE_OPTION_KEYS = {
    # postgres
    "pg_bin_dir", "fetch_tools", "cache_dir", "globals", "staging_dir",
    "schemas", "exclude_schemas", "tables", "exclude_tables", "maintenance_db",
    # mysql
    "dump_options", "dump_tool", "client_tool",
    # redis
    "redis_cli_path", "redis_server_path", "tls", "tls_cacert", "tls_cert", "tls_key",
    "tls_sni", "tls_insecure", "stop_command", "start_command", "rdb_path", "start_timeout",
    "temp_dir", "zero_sync_delay",
    # mongodb
    "mongodump_path", "mongorestore_path", "mongosh_path", "version_probe",
}
_JOB_KEYS = _SHARED_KEYS | ENGINE_OPTION_KEYS | {
    "name", "database", "engine", "url", "password", "password_file", "schedule",
    "target", "targets", "options",
}
_DEFAULT_URLS = {
    "postgres": "postgresql://localhost:5432/{db}",
    "mysql": "mysql://localhost:3306/{db}",
    "redis": "redis://localhost:6379/0",
    "mongodb": "mongodb://localhost:27017/{db}",
}
_RETENTION_KEYS = ("daily", "weekly", "monthly", "days")
_DEFAULT_RETENTION = Retention(daily=7, weekly=4, monthly=12)


class Parser:
    """Turns the raw mapping into typed config; every error names file and key."""

    def __init__(self, source: str) -> None:
        self.source = source

    def err(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, hint, file=self.source, key=key)

    def table(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.err(key, f"expected a table, got {type(value).__name__}")
        return value

    def unknown(self, table: Mapping[str, Any], allowed: set[str], where: str) -> None:
        for k in table:
            if k not in allowed:
                raise self.err(
                    f"{where}.{k}" if where else k,
                    "unknown key",
                    hint=f"allowed here: {', '.join(sorted(allowed))}",
                )

    # -- whole file -------------------------------------------------------------------

    def config(self, raw: Mapping[str, Any]) -> Config:
        self.unknown(raw, {"backup"}, "")
        backup = dict(self.table(raw.get("backup", {}), "backup"))
        self.unknown(backup, _BACKUP_KEYS, "backup")
        targets_raw = self.table(backup.pop("targets", {}), "backup.targets")
        targets = {n: self.target(n, t) for n, t in targets_raw.items()}
        jobs_raw = backup.pop("jobs", [])
        if not isinstance(jobs_raw, list):
            raise self.err("backup.jobs", "expected an array of tables ([[backup.jobs]])")
        defaults = resolve_secrets(backup, file=self.source, where="backup")
        jobs: dict[str, JobConfig] = {}
        for i, job_raw in enumerate(jobs_raw):
            job = self.job(i, self.table(job_raw, f"backup.jobs[{i}]"), defaults, targets)
            if job.name in jobs:
                raise self.err(f"backup.jobs[{i}].name", f"duplicate job name {job.name!r}")
            jobs[job.name] = job
        return Config(targets=targets, jobs=jobs, source=self.source)

    # -- targets ---------------------------------------------------------------------------

    def target(self, name: str, raw: Any) -> TargetConfig:
        where = f"backup.targets.{name}"
        options = resolve_secrets(self.table(raw, where), file=self.source, where=where)
        kind = options.pop("type", None)
        if kind is None:
            kind = self.infer_type(name, options)
        if not isinstance(kind, str):
            raise self.err(f"{where}.type", "expected a string")
        return TargetConfig(name=name, type=kind, options=options, source=self.source)

    def infer_type(self, name: str, options: Mapping[str, Any]) -> str:
        """The seed's targets have no ``type``: infer it from the name or the keys."""
        if name in TARGET_TYPES:
            return name
        if "path" in options:
            return "local"
        if "credentials_file" in options and "bucket" in options:
            return "gcs"
        if "bucket" in options:
            return "s3"
        raise self.err(
            f"backup.targets.{name}.type",
            "is required (cannot infer the target type)",
            hint=f"set type to one of: {', '.join(TARGET_TYPES)}",
        )

    # -- jobs --------------------------------------------------------------------------------

    def job(
        self,
        i: int,
        raw: Mapping[str, Any],
        defaults: Mapping[str, Any],
        targets: Mapping[str, TargetConfig],
    ) -> JobConfig:
        where = f"backup.jobs[{i}]"
        self.unknown(raw, _JOB_KEYS, where)
        job = resolve_secrets(raw, file=self.source, where=where)
        merged = {**defaults, **job}

        engine = self.str_key(job, "engine", where, default="postgres")
        if engine not in ENGINES:
            raise self.err(f"{where}.engine", f"unknown engine {engine!r}",
                           hint=f"expected one of: {', '.join(ENGINES)}")
        database = self.str_key(job, "database", where, default=None)
        name = self.str_key(job, "name", where, default=database)
        if not name:
            raise self.err(f"{where}.name", "is required (or set database)")
        url = self.str_key(job, "url", where, default=None)
        if url is None:
            if database is None and engine != "redis":
                raise self.err(f"{where}.url", "is required (or set database)")
            url = _DEFAULT_URLS[engine].format(db=quote(database or "", safe=""))

        return JobConfig(
            name=name,
            engine=engine,
            url=url,
            targets=self.job_targets(job, where, targets),
            password=self.str_key(job, "password", where, default=None),
            schedule=self.str_key(job, "schedule", where, default=None),
            compression=self.compression(merged, where),
            compression_level=self.int_key(merged, "compression_level", where),
            encryption=self.encryption(merged, where),
            recipients=self.recipients(merged, where),
            encryption_key=self.key(merged, where),
            retention=self.retention(merged, where),
            options=self.options(job, where),
            source=self.source,
        )

    def str_key(
        self, table: Mapping[str, Any], key: str, where: str, *, default: str | None
    ) -> Any:
        value = table.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.err(f"{where}.{key}", f"expected a string, got {type(value).__name__}")
        return value

    def int_key(self, table: Mapping[str, Any], key: str, where: str) -> int | None:
        value = table.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise self.err(f"{where}.{key}", "expected a non-negative integer")
        return value

    def job_targets(
        self, job: Mapping[str, Any], where: str, targets: Mapping[str, TargetConfig]
    ) -> tuple[str, ...]:
        if "target" in job and "targets" in job:
            raise self.err(f"{where}.targets", "both target and targets are set",
                           hint="keep one of them")
        value = job.get("targets", job.get("target"))
        if value is None:
            if len(targets) == 1:
                return (next(iter(targets)),)
            known = ", ".join(targets) or "(no targets defined)"
            raise self.err(f"{where}.targets", "is required", hint=f"name one or more of: {known}")
        names = [value] if isinstance(value, str) else value
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise self.err(f"{where}.targets", "expected a target name or a list of names")
        for n in names:
            if n not in targets:
                raise self.err(f"{where}.targets", f"no target named {n!r}",
                               hint=f"define [backup.targets.{n}] or use one of: "
                               f"{', '.join(targets) or '(none defined)'}")
        return tuple(names)

    def compression(self, merged: Mapping[str, Any], where: str) -> str:
        compress = merged.get("compress", True)
        if not isinstance(compress, bool):
            raise self.err(f"{where}.compress", "expected true or false")
        value = merged.get("compression", "zstd")
        if value not in COMPRESSIONS:
            raise self.err(f"{where}.compression", f"unknown compression {value!r}",
                           hint=f"expected one of: {', '.join(COMPRESSIONS)}")
        return str(value) if compress else "none"

    def encryption(self, merged: Mapping[str, Any], where: str) -> str:
        encrypt = merged.get("encrypt", True)
        if not isinstance(encrypt, bool):
            raise self.err(f"{where}.encrypt", "expected true or false")
        if not encrypt:
            return "none"
        value = merged.get("encryption")
        if value is None:
            if merged.get("recipients"):
                return "age"
            if merged.get("encryption_key"):
                return "aes-256-gcm"
            raise self.err(
                f"{where}.encrypt",
                "encryption is on but no recipients or encryption_key is configured",
                hint="run `dbcrate keygen -o identity.txt` and put the printed age1... "
                "recipient in [backup] recipients, or set encrypt = false",
            )
        if value not in ENCRYPTIONS:
            raise self.err(f"{where}.encryption", f"unknown encryption {value!r}",
                           hint=f"expected one of: {', '.join(ENCRYPTIONS)}")
        return str(value)

    def recipients(self, merged: Mapping[str, Any], where: str) -> tuple[str, ...]:
        value = merged.get("recipients", [])
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list) or not all(isinstance(r, str) for r in value):
            raise self.err(f"{where}.recipients", "expected a list of age1... strings")
        for i, r in enumerate(value, 1):
            if not r.startswith("age1"):
                # never echo the value: it may be a secret key pasted by mistake
                secret = r.strip().upper().startswith("AGE-SECRET-KEY-")
                raise self.err(
                    f"{where}.recipients",
                    f"entry {i} is not an age recipient (it does not start with age1)",
                    hint="that is a secret identity: put its public recipient there "
                    "(`age-keygen -y FILE`)" if secret else
                    "recipients start with age1 (see `dbcrate keygen`)")
        return tuple(value)

    def key(self, merged: Mapping[str, Any], where: str) -> bytes | None:
        value = merged.get("encryption_key")
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.err(f"{where}.encryption_key", "expected a base64 string")
        return decode_key(value, file=self.source, key=f"{where}.encryption_key")

    def retention(self, merged: Mapping[str, Any], where: str) -> Retention:
        table = merged.get("retention")
        days = self.int_key(merged, "retention_days", where)
        if table is None:
            return Retention(days=days) if days is not None else _DEFAULT_RETENTION
        table = self.table(table, f"{where}.retention")
        self.unknown(table, set(_RETENTION_KEYS), f"{where}.retention")
        counts = {k: self.int_key(table, k, f"{where}.retention") for k in _RETENTION_KEYS}
        if days is not None:
            counts["days"] = days
        return Retention(**counts)

    def options(self, job: Mapping[str, Any], where: str) -> dict[str, Any]:
        opts: dict[str, Any] = dict(self.table(job.get("options", {}), f"{where}.options"))
        for k in ENGINE_OPTION_KEYS:
            if k in job:
                opts[k] = job[k]
        return opts
