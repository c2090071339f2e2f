"""Finding and reading the config file: ``--config``, ``$DBCRATE_CONFIG``, then the
default places; TOML (UTF-8) -> ``Parser``."""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbcrate.config.model import Config
from dbcrate.config.parse import Parser
from dbcrate.errors import ConfigError

#: Where the config is looked for, after --config and $DBCRATE_CONFIG.
DEFAULT_PATHS = ("dbcrate.toml", "/etc/dbcrate/config.toml")


def find_config(explicit: str | None) -> Path:
    """The config file to use: ``explicit``, ``$DBCRATE_CONFIG``, then DEFAULT_PATHS.
    Raises ``ConfigError`` if none exists."""
    if explicit:
        candidates: tuple[str, ...] = (explicit,)
    elif os.environ.get("DBCRATE_CONFIG"):
        candidates = (os.environ["DBCRATE_CONFIG"],)
    else:
        candidates = DEFAULT_PATHS
    for c in candidates:
        p = Path(c).expanduser()
        if p.is_file():
            return p
    raise ConfigError(
        f"no config file found (looked at {', '.join(candidates)})",
        hint="pass --config FILE or set DBCRATE_CONFIG; see docs/config.md",
    )


def load(path: str | Path) -> Config:
    """Read and validate a TOML config. Raises ``ConfigError`` naming file and key."""
    p = Path(path)
    try:
        raw = tomllib.loads(p.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"cannot read config: {exc.strerror or exc}", file=str(p)) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"is not UTF-8 text (invalid byte at offset {exc.start})",
            hint="TOML files must be UTF-8; re-save the file as UTF-8 (e.g. with iconv)",
            file=str(p),
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"invalid TOML: {exc}", file=str(p)) from None
    return parse(raw, source=str(p))


def parse(raw: Mapping[str, Any], *, source: str = "<memory>") -> Config:
    """Validate an already-decoded config mapping. Raises ``ConfigError``."""
    return Parser(source).config(raw)
