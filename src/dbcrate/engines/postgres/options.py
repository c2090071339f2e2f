"""The PostgreSQL job options (``[[backup.jobs]]`` keys passed in ``Connection.options``),
validated once when the engine is built. docs/engines/postgres.md documents each one."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from dbcrate.errors import ConfigError

#: option -> pg_dump flag taking one pattern each
_PATTERN_FLAGS = {
    "schemas": "--schema",
    "exclude_schemas": "--exclude-schema",
    "tables": "--table",
    "exclude_tables": "--exclude-table",
}


def _patterns(options: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = options.get(key, ())
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) and v for v in value):
        raise ConfigError("expected a list of non-empty pattern strings", key=key,
                          hint='e.g. ["public", "sales_*"] (pg_dump patterns)')
    return tuple(value)


def _flag(options: Mapping[str, Any], key: str, default: bool) -> bool:
    value = options.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"expected true or false, got {value!r}", key=key)
    return value


def _path(options: Mapping[str, Any], key: str) -> str | None:
    value = options.get(key)
    if value is not None and (not isinstance(value, str) or not value):
        raise ConfigError("expected a non-empty string", key=key)
    return value


@dataclass(frozen=True)
class PgOptions:
    """Validated PostgreSQL job options."""

    globals: bool = False
    schemas: tuple[str, ...] = ()
    exclude_schemas: tuple[str, ...] = ()
    tables: tuple[str, ...] = ()
    exclude_tables: tuple[str, ...] = ()
    fetch_tools: bool = True
    pg_bin_dir: str | None = None
    cache_dir: str | None = None
    maintenance_db: str = "postgres"
    #: where ``restore --jobs`` stages the decrypted dump (default: ``$TMPDIR``)
    staging_dir: str | None = None

    @classmethod
    def parse(cls, options: Mapping[str, Any]) -> PgOptions:
        """Validate ``options``. Raises ``ConfigError`` naming the key."""
        return cls(
            globals=_flag(options, "globals", False),
            schemas=_patterns(options, "schemas"),
            exclude_schemas=_patterns(options, "exclude_schemas"),
            tables=_patterns(options, "tables"),
            exclude_tables=_patterns(options, "exclude_tables"),
            fetch_tools=_flag(options, "fetch_tools", True),
            pg_bin_dir=_path(options, "pg_bin_dir"),
            cache_dir=_path(options, "cache_dir"),
            maintenance_db=_path(options, "maintenance_db") or "postgres",
            staging_dir=_path(options, "staging_dir"),
        )

    def tool_options(self) -> dict[str, Any]:
        """What :func:`dbcrate.engines.pg_tools.resolve` reads."""
        return {"pg_bin_dir": self.pg_bin_dir, "cache_dir": self.cache_dir,
                "fetch_tools": self.fetch_tools}

    def dump_args(self) -> list[str]:
        """pg_dump's selection flags (``--schema=PATTERN`` form, so a pattern can never be
        read as another option)."""
        args: list[str] = []
        for key, flag in _PATTERN_FLAGS.items():
            args += [f"{flag}={p}" for p in getattr(self, key)]
        return args
