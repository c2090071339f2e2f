"""Validation of a decoded TOML mapping into ``Config`` (see docs/config.md)."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Any
from urllib.parse import quote

from dbcrate.config import agent as config_agent
from dbcrate.config.checks import VERIFY_KEYS, parse_verify
from dbcrate.config.keys import (
    ALL_ENGINE_OPTIONS,
    DEFAULT_URLS,
    ENGINE_OPTIONS,
    TARGET_KEYS,
    job_name_problem,
    with_file_variants,
)
from dbcrate.config.model import (
    COMPRESSIONS,
    ENCRYPTIONS,
    ENGINES,
    TARGET_TYPES,
    Config,
    JobConfig,
    Retention,
    TargetConfig,
    option_problem,
)
from dbcrate.config.pitr import parse_pitr
from dbcrate.config.secrets import decode_key, resolve_secrets
from dbcrate.config.signers import signers
from dbcrate.errors import ConfigError

#: keys a [backup] table and a job may both set (the job overrides)
_SHARED_KEYS = {
    "compression", "compression_level", "compress", "plaintext_sha256", "encryption", "encrypt",
    "recipients", "encryption_key", "encryption_key_file", "retention", "retention_days",
    "signing_key_file", "trusted_signers", "allowed_signers_file", "max_age", *VERIFY_KEYS,
}
_BACKUP_KEYS = _SHARED_KEYS | {"targets", "jobs"}
#: engine-specific job keys (any engine's), passed in ``JobConfig.options``; which engine
#: reads which is in ``config.keys.ENGINE_OPTIONS`` (docs/engines/*.md)
ENGINE_OPTION_KEYS = set(ALL_ENGINE_OPTIONS)
_JOB_KEYS = _SHARED_KEYS | ENGINE_OPTION_KEYS | {
    "name", "database", "engine", "url", "password", "password_file", "schedule",
    "target", "targets", "options", "timezone", "checks",
}
_RETENTION_KEYS = ("hourly", "daily", "weekly", "monthly", "yearly", "days")
_DEFAULT_RETENTION = Retention(daily=7, weekly=4, monthly=12)


class Parser:
    """Turns the raw mapping into typed config; every error names file and key."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.agent_tz = "UTC"

    def err(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, hint, file=self.source, key=key)

    def table(self, value: Any, key: str) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.err(key, f"expected a table, got {type(value).__name__}")
        return value

    def unknown(self, table: Mapping[str, Any], allowed: AbstractSet[str], where: str) -> None:
        """Raise ``ConfigError`` naming the first key of ``table`` not in ``allowed``."""
        for k in table:
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1)
                guess = f"did you mean {close[0]}? " if close else ""
                raise self.err(
                    f"{where}.{k}" if where else k,
                    "unknown key",
                    hint=f"{guess}allowed here: {', '.join(sorted(allowed))}",
                )

    # -- whole file -------------------------------------------------------------------

    def config(self, raw: Mapping[str, Any]) -> Config:
        self.unknown(raw, {"backup", "agent", "notify"}, "")
        agent = config_agent.parse_agent(raw.get("agent"), self.source)
        self.agent_tz = agent.timezone  # the zone of schedules whose job sets none
        backup = dict(self.table(raw.get("backup", {}), "backup"))
        self.unknown(backup, _BACKUP_KEYS, "backup")
        self.encryption_setting(backup, "backup")
        self.retention(backup, "backup")  # so a typo in it is named where it is
        self.bool_key(backup, "plaintext_sha256", "backup", default=False)  # (and a value)
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
        notify = config_agent.parse_notify(raw.get("notify"), self.source, jobs)
        return Config(targets=targets, jobs=jobs, source=self.source, agent=agent,
                      notify=notify)

    # -- targets ---------------------------------------------------------------------------

    def target(self, name: str, raw: Any) -> TargetConfig:
        where = f"backup.targets.{name}"
        table = self.table(raw, where)
        kind = table.get("type")
        if kind is None:
            kind = self.infer_type(name, table)
        if not isinstance(kind, str):
            raise self.err(f"{where}.type", "expected a string")
        if kind not in TARGET_TYPES:
            raise self.err(f"{where}.type", f"unknown target type {kind!r}",
                           hint=f"expected one of: {', '.join(TARGET_TYPES)}")
        self.unknown(table, {"type"} | with_file_variants(TARGET_KEYS[kind]), where)
        options = resolve_secrets(table, file=self.source, where=where)
        options.pop("type", None)
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
        engine = self.str_key(raw, "engine", where, default="postgres")
        if engine not in ENGINES:
            raise self.err(f"{where}.engine", f"unknown engine {engine!r}",
                           hint=f"expected one of: {', '.join(ENGINES)}")
        self.engine_keys(raw, engine, where)
        job = resolve_secrets(raw, file=self.source, where=where)
        merged = {**defaults, **job}

        database = self.str_key(job, "database", where, default=None)
        name = self.str_key(job, "name", where, default=database)
        if not name:
            raise self.err(f"{where}.name", "is required (or set database)")
        problem = job_name_problem(name)
        if problem:
            key = "name" if "name" in job else "database"
            raise self.err(f"{where}.{key}", f"job name {name!r} {problem}",
                           hint="job names are used in object keys: use letters, digits, "
                           "'-', '_' and '.' (set name = ... if the database name has others)")
        url = self.str_key(job, "url", where, default=None)
        if url is None:
            if database is None and engine != "redis":
                raise self.err(f"{where}.url", "is required (or set database)")
            url = DEFAULT_URLS[engine].format(db=quote(database or "", safe=""))

        if engine == "postgres":  # physical-mode keys (docs/pitr.md)
            parse_pitr(self.options(job, where), where=where, source=self.source)
        return JobConfig(
            name=name,
            engine=engine,
            url=url,
            targets=self.job_targets(job, where, targets),
            password=self.str_key(job, "password", where, default=None),
            **config_agent.job_keys(job, merged, self.agent_tz, self.source, where),
            compression=self.compression(merged, where),
            compression_level=self.int_key(merged, "compression_level", where),
            plaintext_sha256=self.bool_key(merged, "plaintext_sha256", where, default=False),
            encryption=self.encryption(job, defaults, merged, where),
            recipients=self.recipients(merged, where),
            encryption_key=self.key(merged, where),
            retention=self.retention(merged, where),
            options=self.options(job, where),
            source=self.source,
            signing_key_file=self.str_key(merged, "signing_key_file", where, default=None),
            trusted_signers=self.signers(merged, where),
            allowed_signers_file=self.str_key(merged, "allowed_signers_file", where,
                                              default=None),
            verify=parse_verify(merged, engine, self.source, where),
        )

    def engine_keys(self, raw: Mapping[str, Any], engine: str, where: str) -> None:
        """Raise ``ConfigError`` for a job option (a job key or in ``options``) that
        ``engine`` does not read, naming the engine."""
        allowed = ENGINE_OPTIONS[engine]
        for k in raw:
            if k in ALL_ENGINE_OPTIONS and k not in allowed:
                raise self.err(f"{where}.{k}", option_problem(k, engine),
                               hint=f"{engine} options: {', '.join(sorted(allowed))}")
        options = self.table(raw.get("options", {}), f"{where}.options")
        for k in options:
            if k not in allowed:
                close = difflib.get_close_matches(k, allowed, n=1)
                guess = f"did you mean {close[0]}? " if close else ""
                raise self.err(f"{where}.options.{k}", option_problem(k, engine),
                               hint=f"{guess}{engine} options: {', '.join(sorted(allowed))}")

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

    def bool_key(self, table: Mapping[str, Any], key: str, where: str, *,
                 default: bool) -> bool:
        """``table[key]`` (``default`` if absent). Raises ``ConfigError`` unless a bool."""
        value = table.get(key, default)
        if not isinstance(value, bool):
            raise self.err(f"{where}.{key}", "expected true or false")
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

    def encryption_setting(self, table: Mapping[str, Any], where: str) -> str | None:
        """What one table says about encryption: a mode, ``"auto"`` (``encrypt = true``
        alone: infer from the key material), or None (nothing). Raises ``ConfigError``
        for an unknown mode or ``encrypt`` contradicting ``encryption`` in the table."""
        encrypt = table.get("encrypt")
        if encrypt is not None and not isinstance(encrypt, bool):
            raise self.err(f"{where}.encrypt", "expected true or false")
        mode = table.get("encryption")
        if mode is not None and mode not in ENCRYPTIONS:
            raise self.err(f"{where}.encryption", f"unknown encryption {mode!r}",
                           hint=f"expected one of: {', '.join(ENCRYPTIONS)}")
        if encrypt is None:
            return None if mode is None else str(mode)
        if mode is not None and (mode == "none") == encrypt:
            raise self.err(
                f"{where}.encrypt",
                f"encrypt = {str(encrypt).lower()} contradicts encryption = {mode!r}",
                hint="keep one of them (encryption = \"none\" is the same as encrypt = false)",
            )
        if not encrypt:
            return "none"
        return str(mode) if mode is not None else "auto"

    def encryption(
        self,
        job: Mapping[str, Any],
        defaults: Mapping[str, Any],
        merged: Mapping[str, Any],
        where: str,
    ) -> str:
        """The job's effective encryption: the job's own setting, else [backup]'s, else
        inferred from the key material. Encryption is off only when that says none.
        Raises ``ConfigError`` (file and key) when the mode lacks its key material."""
        backup = self.encryption_setting(defaults, "backup")
        own = self.encryption_setting(job, where)
        if own is None and backup == "none":
            for key in ("recipients", "encryption_key"):
                if job.get(key):
                    raise self.err(
                        f"{where}.{key}",
                        f"the job sets {key} but [backup] turns encryption off",
                        hint="say what this job wants: set encryption (or encrypt) in the job",
                    )
        setting = own or backup or "auto"
        source = where if own is not None else "backup" if backup is not None else where
        if setting == "auto":
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
        if setting == "age" and not merged.get("recipients"):
            raise self.err(f"{where}.recipients",
                           f'{source}.encryption = "age" but no recipients are configured',
                           hint="put the age1... line printed by `dbcrate keygen` in "
                           "recipients (in [backup] or the job)")
        if setting == "aes-256-gcm" and not merged.get("encryption_key"):
            raise self.err(f"{where}.encryption_key",
                           f'{source}.encryption = "aes-256-gcm" but no encryption_key is set',
                           hint="set encryption_key or encryption_key_file "
                           "(head -c 32 /dev/urandom | base64)")
        return setting

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

    def signers(self, merged: Mapping[str, Any], where: str) -> tuple[str, ...]:
        """trusted_signers plus allowed_signers_file entries (``config.signers``)."""
        return signers(merged, where, self.source)

    def options(self, job: Mapping[str, Any], where: str) -> dict[str, Any]:
        """The job's engine options: its ``options`` table, then its option keys (checked
        against the engine by ``engine_keys``)."""
        opts: dict[str, Any] = dict(self.table(job.get("options", {}), f"{where}.options"))
        for k in ALL_ENGINE_OPTIONS:
            if k in job:
                opts[k] = job[k]
        return opts
