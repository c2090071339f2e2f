"""Find pg_dump/pg_restore of the same major as the server.

Order: ``options["pg_bin_dir"]`` (an error if its major differs), dbcrate's pgbin cache,
``PATH`` and ``/usr/lib/postgresql/N/bin`` when the major matches, then a verified download
by :func:`dbcrate.pgbin.ensure` unless ``options["fetch_tools"]`` is false.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from dbcrate import pgbin
from dbcrate.errors import ToolNotFound

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class PgTools:
    """A directory holding pg_dump and pg_restore of one version."""

    bin_dir: Path
    version: str

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def pg_dump(self) -> str:
        return str(self.bin_dir / "pg_dump")

    @property
    def pg_restore(self) -> str:
        return str(self.bin_dir / "pg_restore")


@lru_cache(maxsize=32)
def tool_version(exe: Path) -> str | None:
    """``17.11`` from ``exe --version``, or None if it cannot be run."""
    try:
        out = subprocess.run(
            [str(exe), "--version"], capture_output=True, text=True, timeout=30, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    m = _VERSION_RE.search(out)
    return m.group(1) if m else None


def tools_in(bin_dir: Path) -> PgTools | None:
    """The tools in ``bin_dir`` if both pg_dump and pg_restore run there."""
    dump_v = tool_version(bin_dir / "pg_dump")
    restore_v = tool_version(bin_dir / "pg_restore")
    if dump_v is None or restore_v is None or dump_v != restore_v:
        return None
    return PgTools(bin_dir, dump_v)


def resolve(server_major: int, server_version: str, options: Mapping[str, Any]) -> PgTools:
    """The tools to dump and restore a server of ``server_major``.
    Raises ``ToolNotFound`` (or ``DigestMismatch`` from a refused download)."""
    explicit = options.get("pg_bin_dir")
    if explicit:
        found = tools_in(Path(explicit))
        if found is None:
            raise ToolNotFound(
                f"pg_bin_dir {explicit} holds no runnable pg_dump and pg_restore",
                hint="point pg_bin_dir at the bin directory of a PostgreSQL installation",
            )
        if found.major != server_major:
            raise ToolNotFound(
                f"pg_bin_dir {explicit} has pg_dump {found.version}, but the server runs "
                f"PostgreSQL {server_version}; dbcrate dumps with the same major",
                hint=f"point pg_bin_dir at PostgreSQL {server_major} tools, or remove it",
            )
        return found
    cache_dir = Path(options["cache_dir"]) if options.get("cache_dir") else None
    looked: list[str] = []
    hit = pgbin.find_cached(server_major, cache_dir)
    looked.append(f"{pgbin.cache_root(cache_dir) / 'pg'}")
    candidates: list[Path] = [hit.bin_dir] if hit else []
    on_path = shutil.which("pg_dump")
    looked.append("PATH")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    system = Path(f"/usr/lib/postgresql/{server_major}/bin")
    candidates.append(system)
    looked.append(str(system))
    for bin_dir in candidates:
        found = tools_in(bin_dir)
        if found is not None and found.major == server_major:
            return found
    if options.get("fetch_tools", True) is False:
        raise ToolNotFound(
            f"no pg_dump/pg_restore {server_major} found for the server's PostgreSQL "
            f"{server_version}; looked in: {', '.join(looked)}",
            hint=(
                f"run `python -m dbcrate.pgbin {server_major}` to fetch verified binaries, "
                f"install postgresql-client-{server_major}, or set pg_bin_dir"
            ),
        )
    root = pgbin.ensure(server_major, cache_dir)
    found = tools_in(root / "bin")
    if found is None or found.major != server_major:
        raise ToolNotFound(f"the PostgreSQL {server_major} build in {root} does not run here")
    return found
