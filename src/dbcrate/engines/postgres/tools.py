"""Find pg_dump/pg_restore (and pg_dumpall/psql) of the same major as the server.

Order, first match wins:

1. ``options["pg_bin_dir"]``: used as configured; an error if its major differs.
2. The standard install locations of that major (``/usr/lib/postgresql/N/bin``,
   ``/usr/pgsql-N/bin``, Homebrew's ``postgresql@N``, Postgres.app), then the directory of
   the ``pg_dump`` on ``PATH``, each only when its version's major matches. A version
   dispatcher (Debian's ``pg_wrapper``) on ``PATH`` is skipped: the tool it runs can depend
   on the environment, the real directories are checked instead.
3. dbcrate's cache (:mod:`dbcrate.pgbin`; ``options["cache_dir"]`` or the default), after
   checking the cached binaries' digests.
4. A verified download into that cache, unless ``options["fetch_tools"]`` is false.

If none is found, ``ToolNotFound`` names the server version, every place looked at and
the command that fixes it. There is never a fallback to another major.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dbcrate.engines.process import child_env
from dbcrate.errors import ToolNotFound

_VERSION_RE = re.compile(r"\(PostgreSQL\)\s+(\d+(?:\.\d+)*)")


@dataclass(frozen=True)
class PgTools:
    """A directory holding pg_dump and pg_restore (and usually pg_dumpall, psql) of one
    version, and where it was found (``pg_bin_dir``, ``system``, ``PATH``, ``cache``)."""

    bin_dir: Path
    version: str
    source: str = ""

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def pg_dump(self) -> str:
        return str(self.bin_dir / "pg_dump")

    @property
    def pg_restore(self) -> str:
        return str(self.bin_dir / "pg_restore")

    def tool(self, name: str) -> str:
        """The path of another tool of this version (``pg_dumpall``, ``psql``).
        Raises ``ToolNotFound`` if it is not in ``bin_dir``."""
        path = self.bin_dir / name
        if not os.access(path, os.X_OK):
            raise ToolNotFound(
                f"{name} is not in {self.bin_dir} (where pg_dump {self.version} was found)",
                hint=f"install the PostgreSQL {self.major} client tools there, or set "
                "pg_bin_dir to a complete bin directory",
            )
        return str(path)


#: ``--version`` of each tool asked so far in this process (None: it did not run)
_VERSIONS: dict[Path, str | None] = {}


def tool_version(exe: Path) -> str | None:
    """``17.11`` from ``exe --version``, or None if it cannot be run (remembered)."""
    return tool_versions([exe])[0]


def tool_versions(exes: Sequence[Path]) -> list[str | None]:
    """``tool_version`` of each of ``exes``; the ones not asked before run side by side
    (each ``--version`` is a process start, ~3-4 ms). Raises nothing."""
    return start_versions(exes)()


def start_versions(exes: Sequence[Path]) -> Callable[[], list[str | None]]:
    """Start ``--version`` of each of ``exes`` not asked before, and return what waits
    for them and gives their ``tool_version``s: the caller does something else (asks
    the server its version) meanwhile. Raises nothing."""
    running: list[tuple[Path, subprocess.Popen[str]]] = []
    for exe in dict.fromkeys(exes):
        if exe in _VERSIONS:
            continue
        try:
            running.append((exe, subprocess.Popen(
                [str(exe), "--version"], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                stderr=subprocess.DEVNULL, text=True, env=child_env())))
        except OSError:
            _VERSIONS[exe] = None

    def wait() -> list[str | None]:
        for exe, proc in running:
            try:
                out, _ = proc.communicate(timeout=30)
            except (OSError, subprocess.SubprocessError):
                proc.kill()
                proc.wait()
                out = ""
            m = _VERSION_RE.search(out or "")
            _VERSIONS[exe] = m.group(1) if m else None
        running.clear()
        return [_VERSIONS.get(exe) for exe in exes]

    return wait


def tools_in(bin_dir: Path, source: str = "") -> PgTools | None:
    """The tools in ``bin_dir`` if both pg_dump and pg_restore run there, same version."""
    dump_v, restore_v = tool_versions([bin_dir / "pg_dump", bin_dir / "pg_restore"])
    if dump_v is None or restore_v is None or dump_v != restore_v:
        return None
    return PgTools(bin_dir, dump_v, source)


def prefetch(options: Mapping[str, Any]) -> Callable[[], object]:
    """Start the ``--version`` calls ``resolve`` will make, where they do not depend on
    the server's major (a configured ``pg_bin_dir``), and return what waits for them:
    the caller asks the server meanwhile. A no-op otherwise. Raises nothing."""
    explicit = options.get("pg_bin_dir")
    if not explicit:
        return lambda: None
    return start_versions([Path(explicit) / "pg_dump", Path(explicit) / "pg_restore"])


def standard_dirs(major: int) -> list[Path]:
    """Where distributions and installers put PostgreSQL ``major``'s binaries."""
    return [
        Path(f"/usr/lib/postgresql/{major}/bin"),
        Path(f"/usr/pgsql-{major}/bin"),
        Path(f"/opt/homebrew/opt/postgresql@{major}/bin"),
        Path(f"/usr/local/opt/postgresql@{major}/bin"),
        Path(f"/Applications/Postgres.app/Contents/Versions/{major}/bin"),
    ]


def _path_dir(looked: list[str]) -> Path | None:
    """The directory of the pg_dump on PATH, unless it is missing or a dispatcher."""
    exe = shutil.which("pg_dump")
    if exe is None:
        looked.append("PATH (no pg_dump)")
        return None
    if Path(exe).resolve().name != "pg_dump":
        looked.append(f"PATH ({exe} is a version dispatcher, skipped)")
        return None
    version = tool_version(Path(exe))
    looked.append(f"PATH ({exe}: {version or 'does not run'})")
    return Path(exe).parent


def probe_psql(options: Mapping[str, Any]) -> str | None:
    """A psql to ask a server its version before its major is known (the probe's query
    runs on any major): ``pg_bin_dir``'s if one is set, else the newest system install's
    (``/usr/lib/postgresql/N/bin``, ``/usr/pgsql-N/bin``), else the one on ``PATH``. None if
    there is none. Never the cache's: its binaries run only once their digests are
    checked, which needs the major. Pure lookup; raises nothing."""
    explicit = options.get("pg_bin_dir")
    if explicit:
        candidates = [Path(explicit) / "psql"]
    else:
        def major(d: Path) -> int:
            digits = "".join(c for c in d.name if c.isdigit())
            return int(digits) if digits else -1

        installs = [*Path("/usr/lib/postgresql").glob("*"), *Path("/usr").glob("pgsql-*")]
        candidates = [d / "bin" / "psql" for d in sorted(installs, key=major, reverse=True)]
        on_path = shutil.which("psql")
        if on_path:
            candidates.append(Path(on_path))
    for exe in candidates:
        if os.access(exe, os.X_OK) and exe.is_file():
            return str(exe)
    return None


def resolve(server_major: int, server_version: str, options: Mapping[str, Any]) -> PgTools:
    """The tools for a server of ``server_major`` (see the module docstring for the order).
    Raises ``ToolNotFound``, or ``DigestMismatch`` when a download or a cached binary
    fails verification (a hard error: no other copy is tried)."""
    explicit = options.get("pg_bin_dir")
    if explicit:
        found = tools_in(Path(explicit), "pg_bin_dir")
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
    looked: list[str] = []
    for bin_dir in standard_dirs(server_major):
        found = tools_in(bin_dir, "system") if bin_dir.is_dir() else None
        if found is not None and found.major == server_major:
            return found
    looked.append(", ".join(str(d) for d in standard_dirs(server_major)))
    on_path = _path_dir(looked)
    if on_path is not None:
        found = tools_in(on_path, "PATH")
        if found is not None and found.major == server_major:
            return found
    from dbcrate import pgbin  # the cache and its downloader (urllib...): only from here on

    cache_dir = Path(options["cache_dir"]) if options.get("cache_dir") else None
    hit = pgbin.find_cached(server_major, cache_dir)
    looked.append(f"the dbcrate cache {pgbin.pg_dir(cache_dir)}")
    if hit is not None:
        hit = pgbin.verify(hit, pgbin.CLIENT_FILES)
        found = tools_in(hit.bin_dir, "cache")
        if found is not None and found.major == server_major:
            return found
    fix = f"dbcrate tools fetch {server_major}" + (f" --cache-dir {cache_dir}" if cache_dir else "")
    what = f"no pg_dump/pg_restore {server_major} for the server's PostgreSQL {server_version}"
    hint = (f"run `{fix}` (on a host without network access, copy a cache that has it), "
            f"install the PostgreSQL {server_major} client tools, or set pg_bin_dir")
    if options.get("fetch_tools", True) is False:
        raise ToolNotFound(f"{what}; looked in: {'; '.join(looked)}; fetching is disabled "
                           "(fetch_tools = false)", hint=hint)
    try:
        root = pgbin.ensure(server_major, cache_dir, check=pgbin.CLIENT_FILES)
    except ToolNotFound as e:
        raise ToolNotFound(f"{what}; looked in: {'; '.join(looked)}; and the download "
                           f"failed: {e.message}", hint=hint) from e
    found = tools_in(root / "bin", "cache")
    if found is None or found.major != server_major:
        raise ToolNotFound(f"the PostgreSQL {server_major} build in {root} does not run here")
    return found
