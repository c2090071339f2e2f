"""Interoperability with the real tools: Debian's age, age-keygen, zstd and gzip CLIs,
and the standalone scripts/dbcrate-aes-decrypt.py."""

from __future__ import annotations

import base64
import os
import random
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbcrate.codecs import Codec
from dbcrate.codecs.aesgcm import AesGcmCodec
from dbcrate.codecs.age import AgeCodec, generate_identity, recipient_of
from dbcrate.codecs.gzip import GzipCodec
from dbcrate.codecs.zstd import ZstdCodec
from dbcrate.errors import CorruptedData, TruncatedData, WrongKey
from tests.lib.e2e import ROOT

AES_SCRIPT = ROOT / "scripts" / "dbcrate-aes-decrypt.py"
K = 64 * 1024


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(f"the {name} command-line tool is not installed")
    return path


def _run(argv: list[str], data: bytes = b"") -> bytes:
    done = subprocess.run(argv, input=data, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode(errors="replace")
    return done.stdout


def _pieces(data: bytes, step: int = 300_001) -> Iterator[bytes]:
    for i in range(0, len(data), step):
        yield data[i : i + step]


def encode(codec: Codec, data: bytes) -> bytes:
    stage = codec.encoder()
    return b"".join([*(stage.feed(p) for p in _pieces(data)), stage.flush()])


def decode(codec: Codec, data: bytes) -> bytes:
    stage = codec.decoder()
    return b"".join([*(stage.feed(p) for p in _pieces(data, 77_777)), stage.flush()])


def _payload(size: int) -> bytes:
    rng = random.Random(size)
    rows = range(size // 30 + 1)
    text = b"".join(b"INSERT INTO t VALUES (%d, 'row %d');\n" % (i, i * 7) for i in rows)
    return (text[: size // 2] + rng.randbytes(size))[:size]


PAYLOAD_SIZES = [0, 1, K, 3 * K + 7, 2 * (1 << 20) + 5]


@pytest.fixture(scope="module")
def keyfile(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """An identity made by age-keygen, and its recipient."""
    keygen = _tool("age-keygen")
    path = tmp_path_factory.mktemp("age") / "key.txt"
    _run([keygen, "-o", str(path)])
    recipient = _run([keygen, "-y", str(path)]).decode().strip()
    return path, recipient


# -- age --------------------------------------------------------------------------------


@pytest.mark.parametrize("size", PAYLOAD_SIZES)
def test_age_cli_decrypts_ours(size: int, tmp_path: Path) -> None:
    age = _tool("age")
    identity, recipient = generate_identity()
    key = tmp_path / "key.txt"
    key.write_text(identity + "\n")
    data = _payload(size)
    blob = encode(AgeCodec([recipient, generate_identity()[1]]), data)
    assert _run([age, "-d", "-i", str(key)], blob) == data


@pytest.mark.parametrize("armor", [False, True], ids=["binary", "armored"])
@pytest.mark.parametrize("size", PAYLOAD_SIZES)
def test_we_decrypt_age_cli_output(size: int, armor: bool, keyfile: tuple[Path, str]) -> None:
    age = _tool("age")
    path, recipient = keyfile
    other = generate_identity()[1]
    data = _payload(size)
    blob = _run([age, *(["-a"] if armor else []), "-r", other, "-r", recipient], data)
    assert blob.startswith(b"-----BEGIN AGE" if armor else b"age-encryption.org/v1\n")
    assert decode(AgeCodec(identities=[path.read_text()]), blob) == data


def test_age_keygen_identity_with_our_encoder(keyfile: tuple[Path, str]) -> None:
    path, recipient = keyfile
    assert recipient_of(path.read_text()) == recipient
    data = _payload(K + 3)
    blob = encode(AgeCodec([recipient]), data)
    assert decode(AgeCodec(identities=[path.read_text()]), blob) == data
    assert _run([_tool("age"), "-d", "-i", str(path)], blob) == data


# -- compression ------------------------------------------------------------------------


@pytest.mark.parametrize("level", [1, 3, 19])
@pytest.mark.parametrize("size", PAYLOAD_SIZES)
def test_zstd_both_ways(size: int, level: int) -> None:
    zstd = _tool("zstd")
    data = _payload(size)
    assert _run([zstd, "-d", "-c", "-q"], encode(ZstdCodec(level), data)) == data
    assert decode(ZstdCodec(), _run([zstd, f"-{level}", "-c", "-q"], data)) == data


def test_zstd_cli_multithreaded_and_concatenated_frames() -> None:
    zstd = _tool("zstd")
    data = _payload(3 << 20)
    multi = _run([zstd, "-T2", "-3", "-c", "-q"], data)
    assert decode(ZstdCodec(), multi) == data
    two = _run([zstd, "-c", "-q"], data[:1000]) + _run([zstd, "-c", "-q"], data[1000:])
    assert decode(ZstdCodec(), two) == data


@pytest.mark.parametrize("size", PAYLOAD_SIZES)
def test_gzip_both_ways(size: int) -> None:
    gzip = _tool("gzip")
    data = _payload(size)
    assert _run([gzip, "-d", "-c"], encode(GzipCodec(), data)) == data
    assert decode(GzipCodec(), _run([gzip, "-c", "-n"], data)) == data
    two = _run([gzip, "-c"], data[:10]) + _run([gzip, "-c"], data[10:])
    assert decode(GzipCodec(), two) == data


# -- aes-256-gcm by hand ------------------------------------------------------------------


def _aes_script(keyfile: Path, blob: bytes) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [sys.executable, str(AES_SCRIPT), str(keyfile)],
        input=blob,
        capture_output=True,
        timeout=300,
    )


@pytest.mark.parametrize("size", PAYLOAD_SIZES)
def test_aes_script_decrypts_ours(size: int, tmp_path: Path) -> None:
    key = os.urandom(32)
    keyfile = tmp_path / "key"
    keyfile.write_text(base64.b64encode(key).decode() + "\n")
    data = _payload(size)
    done = _aes_script(keyfile, encode(AesGcmCodec(key), data))
    assert done.returncode == 0, done.stderr
    assert done.stdout == data


def test_aes_script_refuses_bad_input(tmp_path: Path) -> None:
    key = os.urandom(32)
    keyfile = tmp_path / "key"
    keyfile.write_text(base64.b64encode(key).decode())
    blob = encode(AesGcmCodec(key), _payload(3 * K + 5))
    wrong = tmp_path / "wrong"
    wrong.write_text(base64.b64encode(bytes(32)).decode())
    assert _aes_script(wrong, blob).returncode == 3
    damaged = bytearray(blob)
    damaged[len(blob) // 2] ^= 1
    assert _aes_script(keyfile, bytes(damaged)).returncode == 4
    assert _aes_script(keyfile, blob + b"x").returncode == 4
    assert _aes_script(keyfile, blob[: 77 + 2 * (K + 17)]).returncode == 5
    assert _aes_script(keyfile, blob[: 77 + K]).returncode == 5
    done = _aes_script(keyfile, blob[:40])
    assert done.returncode == 5
    assert base64.b64encode(key) not in done.stderr


def test_aes_script_agrees_with_the_codec(tmp_path: Path) -> None:
    """The script and the codec give the same verdict on damaged and cut streams."""
    key = os.urandom(32)
    keyfile = tmp_path / "key"
    keyfile.write_text(base64.b64encode(key).decode())
    blob = encode(AesGcmCodec(key), _payload(3 * K + 5))
    unit = K + 17
    variants = [blob[:cut] for cut in (0, 30, 77, 77 + unit, 77 + unit + 9, 77 + 3 * unit)]
    for pos in (3, 25, 60, 72, 77, 77 + 500, 77 + unit, 77 + 3 * unit, len(blob) - 1):
        damaged = bytearray(blob)
        damaged[pos] ^= 1
        variants.append(bytes(damaged))
    codes = {CorruptedData: 4, TruncatedData: 5, WrongKey: 3}
    for variant in variants:
        with pytest.raises((CorruptedData, TruncatedData, WrongKey)) as info:
            decode(AesGcmCodec(key), variant)
        assert _aes_script(keyfile, variant).returncode == codes[type(info.value)]
