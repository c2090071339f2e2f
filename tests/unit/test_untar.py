"""The base backup's tar writer (engines/postgres/physical/untar.py): what tarfile writes
in ustar form comes out byte for byte whatever the chunking; what a restore must not
write is refused before it is written."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path

import pytest

from dbcrate.engines.postgres.physical.untar import BLOCK, Untar, unpack
from dbcrate.errors import RestoreFailed

FILES = {"PG_VERSION": b"17\n", "global/pg_control": bytes(range(256)) * 32,
         "base/1/1259": os.urandom(3 * BLOCK + 17), "base/1/empty": b"",
         "pg_wal/000000010000000000000003": b"\x00" * (BLOCK * 9),
         "backup_manifest": b'{"x": 1}\n' * 100}


def _tar(members: dict[str, bytes], fmt: int = tarfile.USTAR_FORMAT,
         extra: list[tarfile.TarInfo] | None = None) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=fmt) as tar:
        for d in ("global", "base", "base/1", "pg_wal", "pg_wal/archive_status"):
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o700
            tar.addfile(info)
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(body), 0o640, 1_700_000_000
            tar.addfile(info, io.BytesIO(body))
        for info in extra or []:
            tar.addfile(info)
    return out.getvalue()


def _chunks(data: bytes, size: int) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


@pytest.mark.parametrize("size", [1, 7, 511, 512, 513, 4096, 1 << 20])
def test_every_file_comes_out_whatever_the_chunks(tmp_path: Path, size: int) -> None:
    data = _tar(FILES) + b"trailing padding after the end-of-archive blocks"
    assert unpack(_chunks(data, size), tmp_path) == len(FILES) + 5
    for name, body in FILES.items():
        path = tmp_path / name
        assert path.read_bytes() == body, name
        assert path.stat().st_mode & 0o777 == 0o640
        assert int(path.stat().st_mtime) == 1_700_000_000
    assert (tmp_path / "pg_wal" / "archive_status").is_dir()


def _refused(tmp_path: Path, data: bytes, says: str) -> None:
    with pytest.raises(RestoreFailed) as err:
        unpack(_chunks(data, 1000), tmp_path)
    assert says in err.value.message


@pytest.mark.parametrize("kind", [tarfile.SYMTYPE, tarfile.LNKTYPE, tarfile.CHRTYPE,
                                  tarfile.FIFOTYPE])
def test_links_and_devices_are_refused_before_they_are_written(tmp_path: Path,
                                                                kind: bytes) -> None:
    info = tarfile.TarInfo("pg_tblspc/16384")
    info.type, info.linkname = kind, "/etc"
    _refused(tmp_path, _tar({"PG_VERSION": b"17\n"}, extra=[info]), "pg_tblspc/16384")
    assert not (tmp_path / "pg_tblspc" / "16384").exists()
    assert (tmp_path / "PG_VERSION").read_bytes() == b"17\n"  # the caller empties D


@pytest.mark.parametrize("name", ["/etc/passwd", "../outside", "base/../../outside"])
def test_names_outside_the_directory_are_refused(tmp_path: Path, name: str) -> None:
    dest = tmp_path / "d"
    dest.mkdir()
    _refused(dest, _tar({name: b"x"}), name)
    assert list(tmp_path.rglob("outside")) == []
    assert Path("/etc/passwd").read_bytes() != b"x"


def test_pax_and_gnu_long_names_are_refused(tmp_path: Path) -> None:
    long = "base/1/" + "x" * 120
    for fmt in (tarfile.PAX_FORMAT, tarfile.GNU_FORMAT):
        dest = tmp_path / str(fmt)
        dest.mkdir()
        with pytest.raises(RestoreFailed):
            unpack([_tar({long: b"x"}, fmt=fmt)], dest)
        assert not list(dest.rglob("x" * 120))


def test_a_damaged_header_and_a_cut_stream_are_refused(tmp_path: Path) -> None:
    data = bytearray(_tar({"PG_VERSION": b"17\n"}))
    first_file = 5 * BLOCK  # after the five directories
    data[first_file + 10] ^= 0x01
    _refused(tmp_path / "a", bytes(data), "damaged header")
    whole = _tar({"base/1/1259": b"y" * 5000})
    for cut in (5 * BLOCK + 100, 5 * BLOCK + BLOCK + 100):
        dest = tmp_path / f"cut{cut}"
        dest.mkdir(parents=True)
        _refused(dest, whole[:cut], "ends inside")


def test_an_existing_file_is_not_overwritten(tmp_path: Path) -> None:
    (tmp_path / "PG_VERSION").write_bytes(b"mine")
    _refused(tmp_path, _tar({"PG_VERSION": b"17\n"}), "cannot write")
    assert (tmp_path / "PG_VERSION").read_bytes() == b"mine"


def test_close_releases_the_file_being_written(tmp_path: Path) -> None:
    untar = Untar(tmp_path)
    data = _tar({"base/1/1259": b"z" * 5000})
    untar.feed(data[: 6 * BLOCK + 10])
    assert untar._fd >= 0
    untar.close()
    assert untar._fd == -1
