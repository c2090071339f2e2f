"""The cache of verified PostgreSQL tools (``dbcrate tools fetch|list``), over ``pgbin``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dbcrate import pgbin
from dbcrate.errors import DbcrateError, UsageError


def fetch(major: int, cache: Path | None, *, reinstall: bool = False) -> pgbin.Installed:
    """Install PostgreSQL ``major``'s verified tools (a verified install is kept as it is;
    ``reinstall`` unpacks it again). Raises ``UsageError`` for a non-major,
    ``ToolNotFound``/``DigestMismatch`` from ``pgbin``."""
    if not 9 < major < 100:
        raise UsageError(f"{major} is not a PostgreSQL major version", hint="e.g. 17")
    root = (pgbin.reinstall if reinstall else pgbin.ensure)(major, cache)
    return next(i for i in pgbin.cached(cache) if i.root == root)


def describe(cache: Path | None) -> list[dict[str, Any]]:
    """Every cached install, each re-verified against its recorded digests (the fields of
    ``tools list --json``)."""
    return [_describe(i) for i in pgbin.cached(cache)]


def cache_dir(cache: Path | None) -> Path:
    """Where the installs of ``cache`` (or the default cache) live."""
    return pgbin.pg_dir(cache)


def _describe(inst: pgbin.Installed) -> dict[str, Any]:
    try:
        pgbin.verify(inst, (*pgbin.CLIENT_FILES, *pgbin.SERVER_FILES))
        verified, problem = True, ""
    except DbcrateError as e:
        verified, problem = False, e.message
    return {
        "major": inst.major, "version": inst.version, "path": str(inst.root),
        "bin_dir": str(inst.bin_dir), "wheel": inst.filename, "sha256": inst.sha256,
        "known_good": pgbin.KNOWN_GOOD.get(inst.filename) == inst.sha256,
        "source": inst.source, "fetched_at": inst.fetched_at,
        "verified": verified, "problem": problem,
    }
