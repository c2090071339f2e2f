"""Configuration: TOML (or an in-memory mapping) -> typed, frozen config.

- ``model``: the dataclasses (``Config``, ``JobConfig``, ``TargetConfig``, ``Retention``) and
  the vocabularies; they validate themselves, need no TOML and no secret resolution, so
  the control plane can fill them directly.
- ``keys``: which keys each table accepts (per engine, per target type).
- ``secrets``: ``${ENV}`` and ``KEY_file`` resolution, base64 keys.
- ``parse``: a decoded mapping -> model, every error naming file and key; ``files``:
  finding and reading the TOML file.

The shape is in docs/config.md. The seed's keys (``database``, ``target``, ``compress``,
``encrypt``, ``retention_days``, ``encryption_key``) are accepted as written there.
"""

from __future__ import annotations

from dbcrate.config.files import DEFAULT_PATHS, find_config, load, parse
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
from dbcrate.config.parse import Parser
from dbcrate.config.secrets import decode_key, expand, read_secret_file, resolve_secrets

__all__ = [
    "COMPRESSIONS",
    "DEFAULT_PATHS",
    "ENCRYPTIONS",
    "ENGINES",
    "TARGET_TYPES",
    "Config",
    "JobConfig",
    "Parser",
    "Retention",
    "TargetConfig",
    "decode_key",
    "expand",
    "find_config",
    "load",
    "option_problem",
    "parse",
    "read_secret_file",
    "resolve_secrets",
]
