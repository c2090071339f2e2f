"""TOML configuration -> typed, frozen config.

The shape is in docs/config.md. The seed's keys (``database``, ``target``, ``compress``,
``encrypt``, ``retention_days``, ``encryption_key``) are accepted as written there.
Secrets are resolved here, in memory: ``${ENV}`` in any string, and ``KEY_file`` for
any secret ``KEY``. A config can also be built in memory (the future control plane).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from dbcrate.config.agent import AgentConfig, NotifyConfig
from dbcrate.config.checks import VerifySettings
from dbcrate.config.keys import (
    ENGINE_OPTIONS,
    TARGET_KEYS,
    engines_reading,
    job_name_problem,
)
from dbcrate.errors import ConfigError, UsageError
from dbcrate.redact import redact_url, shown_repr

COMPRESSIONS = ("zstd", "gzip", "none")
ENCRYPTIONS = ("age", "aes-256-gcm", "none")
ENGINES = ("postgres", "mysql", "redis", "mongodb")
#: target types the config accepts; the storage registry says which this build can open
TARGET_TYPES = ("local", "s3", "sftp", "gcs", "azure")



@dataclass(frozen=True)
class TargetConfig:
    """One ``[backup.targets.NAME]`` table. ``options`` has secrets already resolved."""

    name: str
    type: str
    options: Mapping[str, Any] = field(default_factory=dict, repr=False)
    source: str = "<memory>"

    def __post_init__(self) -> None:
        """Raises ``ConfigError`` for an unknown type or a key the type does not read,
        for configs built in memory as for files."""
        if self.type not in TARGET_TYPES:
            raise self.error("type", f"unknown target type {self.type!r}",
                             hint=f"expected one of: {', '.join(TARGET_TYPES)}")
        allowed = TARGET_KEYS[self.type]
        for key in self.options:
            if key not in allowed:
                raise self.error(key, f"unknown key for a {self.type} target",
                                 hint=f"allowed here: type, {', '.join(sorted(allowed))}")

    def error(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, hint, file=self.source, key=f"backup.targets.{self.name}.{key}")

    def get_str(self, key: str, default: str | None = None) -> str | None:
        value = self.options.get(key, default)
        if value is not None and not isinstance(value, str):
            raise self.error(key, f"expected a string, got {type(value).__name__}")
        return value

    def require_str(self, key: str) -> str:
        value = self.get_str(key)
        if not value:
            raise self.error(key, "is required")
        return value

    def get_int(self, key: str, default: int) -> int:
        value = self.options.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error(key, f"expected an integer, got {type(value).__name__}")
        return value

    def get_bool(self, key: str, default: bool) -> bool:
        value = self.options.get(key, default)
        if not isinstance(value, bool):
            raise self.error(key, f"expected true or false, got {type(value).__name__}")
        return value


@dataclass(frozen=True)
class Retention:
    """GFS counts and/or an age limit. ``None`` everywhere means keep everything."""

    daily: int | None = None
    weekly: int | None = None
    monthly: int | None = None
    days: int | None = None
    hourly: int | None = None
    yearly: int | None = None


@dataclass(frozen=True)
class JobConfig:
    """One ``[[backup.jobs]]`` entry, merged with ``[backup]`` defaults."""

    name: str
    engine: str
    url: str
    targets: tuple[str, ...]
    password: str | None = field(default=None, repr=False)
    schedule: str | None = None
    compression: str = "zstd"
    compression_level: int | None = None
    #: record the plaintext's SHA-256 in the manifest even when the first stage is zstd
    #: (whose frames carry a content checksum); none/gzip backups always record it
    plaintext_sha256: bool = False
    encryption: str = "none"
    recipients: tuple[str, ...] = ()
    encryption_key: bytes | None = field(default=None, repr=False)
    retention: Retention = Retention()
    options: Mapping[str, Any] = field(default_factory=dict)
    source: str = "<memory>"
    #: manifest signing (docs/config.md): the key this host signs with, and the
    #: ``ssh-ed25519 AAAA... name`` lines (trusted_signers + allowed_signers_file) it trusts
    signing_key_file: str | None = None
    trusted_signers: tuple[str, ...] = ()
    allowed_signers_file: str | None = None
    #: the zone ``schedule`` is read in (None: ``[agent] timezone``), and how old the
    #: newest successful backup may get before status/notifications call it overdue
    timezone: str | None = None
    max_age: timedelta | None = None
    #: verified restores (config/checks.py, docs/verify.md)
    verify: VerifySettings = field(default_factory=VerifySettings)

    def __post_init__(self) -> None:
        """Validate what the file parser validates, so a config built in memory cannot
        select an unknown codec or encrypt without key material (never silently none).

        Raises ``ConfigError`` naming the job and the key.
        """
        problem = job_name_problem(self.name)
        if problem:
            raise ConfigError(f"job name {self.name!r} {problem}", file=self.source,
                              key="jobs.name")
        if self.engine not in ENGINES:
            raise self.error("engine", f"unknown engine {self.engine!r}",
                             hint=f"expected one of: {', '.join(ENGINES)}")
        if self.compression not in COMPRESSIONS:
            raise self.error("compression", f"unknown compression {self.compression!r}",
                             hint=f"expected one of: {', '.join(COMPRESSIONS)}")
        if not isinstance(self.plaintext_sha256, bool):
            raise self.error("plaintext_sha256", "expected true or false")
        if self.encryption not in ENCRYPTIONS:
            raise self.error("encryption", f"unknown encryption {self.encryption!r}",
                             hint=f"expected one of: {', '.join(ENCRYPTIONS)}")
        if self.encryption == "age" and not self.recipients:
            raise self.error("recipients", 'encryption = "age" needs at least one recipient',
                             hint="put the age1... line of `dbcrate keygen` in recipients")
        if self.encryption == "aes-256-gcm" and (
            not isinstance(self.encryption_key, bytes) or len(self.encryption_key) != 32
        ):
            raise self.error("encryption_key",
                             'encryption = "aes-256-gcm" needs a 256-bit encryption_key',
                             hint="set encryption_key or encryption_key_file "
                             "(head -c 32 /dev/urandom | base64)")
        for key in self.options:
            if key not in ENGINE_OPTIONS[self.engine]:
                raise self.error(f"options.{key}", option_problem(key, self.engine),
                                 hint=f"{self.engine} options: "
                                 f"{', '.join(sorted(ENGINE_OPTIONS[self.engine]))}")

    def error(self, key: str, message: str, hint: str | None = None) -> ConfigError:
        """A ``ConfigError`` about ``key`` of this job (``jobs.NAME.KEY``)."""
        return ConfigError(message, hint, file=self.source, key=f"jobs.{self.name}.{key}")

    def __repr__(self) -> str:
        """Like the dataclass repr, with the url's password and secret options masked."""
        return shown_repr(self, url=redact_url(self.url))


def option_problem(key: str, engine: str) -> str:
    """The message for job option ``key`` that ``engine`` does not read."""
    others = engines_reading(key)
    if others:
        return f"{key} is a {' and '.join(others)} option; it does not apply to {engine} jobs"
    return "unknown key"


@dataclass(frozen=True)
class Config:
    """The whole configuration."""

    targets: Mapping[str, TargetConfig]
    jobs: Mapping[str, JobConfig]
    source: str = "<memory>"
    agent: AgentConfig = field(default_factory=AgentConfig)
    notify: tuple[NotifyConfig, ...] = ()

    def job(self, name: str) -> JobConfig:
        """The job called ``name``. Raises ``UsageError`` listing the known jobs."""
        try:
            return self.jobs[name]
        except KeyError:
            known = ", ".join(self.jobs) or "none"
            raise UsageError(
                f"no job named {name!r} in {self.source}", hint=f"jobs defined: {known}"
            ) from None

    def target(self, name: str) -> TargetConfig:
        """The target called ``name``. Raises ``UsageError`` listing the known targets."""
        try:
            return self.targets[name]
        except KeyError:
            known = ", ".join(self.targets) or "none"
            raise UsageError(
                f"no target named {name!r} in {self.source}", hint=f"targets defined: {known}"
            ) from None
