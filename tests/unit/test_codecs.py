"""Round trips, corruption, truncation and key errors for every codec."""

from __future__ import annotations

import os
import random
from collections.abc import Callable, Iterator

import pytest

from dbcrate.codecs import Codec, make
from dbcrate.codecs.aesgcm import HEADER_SIZE, MAGIC, AesGcmCodec
from dbcrate.codecs.age import AgeCodec, fingerprint, generate_identity, recipient_of
from dbcrate.codecs.gzip import GzipCodec
from dbcrate.codecs.identity import IdentityCodec
from dbcrate.codecs.zstd import ZstdCodec
from dbcrate.errors import (
    CorruptedData,
    IntegrityError,
    InvalidKey,
    NoMatchingIdentity,
    TruncatedData,
    WrongKey,
)

K = 64 * 1024
IDENTITY, RECIPIENT = generate_identity()
OTHER_IDENTITY, OTHER_RECIPIENT = generate_identity()
AES_KEY = bytes(range(32))

CODECS: dict[str, Callable[[], Codec]] = {
    "none": IdentityCodec,
    "zstd-1": lambda: ZstdCodec(1),
    "zstd-3": lambda: ZstdCodec(3),
    "gzip": GzipCodec,
    "age": lambda: AgeCodec([RECIPIENT, OTHER_RECIPIENT], [IDENTITY]),
    "aes": lambda: AesGcmCodec(AES_KEY),
}


def _mixed(size: int) -> bytes:
    """Half random, half compressible text: what a dump with blobs looks like."""
    rng = random.Random(size)
    rows = range(size // 15 + 1)
    text = b"".join(b"%d\tcustomer %d\tpaid\n" % (i, rng.randrange(1000)) for i in rows)
    return (rng.randbytes(size // 2) + text)[:size]


SIZES = {
    "0": b"",
    "1": b"x",
    "65535": os.urandom(K - 1),
    "65536": os.urandom(K),
    "65537": os.urandom(K + 1),
    "3x65536": os.urandom(3 * K),
    "3MiB-mixed": _mixed(3 * (1 << 20) + 12345),
}

PIECES = (1, 7, K - 1, 1 << 20, 3, 100_000, K + 1, 5000)


def _pieces(data: bytes, shift: int = 0) -> Iterator[bytes]:
    pos, i = 0, shift
    while pos < len(data):
        step = PIECES[i % len(PIECES)]
        yield data[pos : pos + step]
        pos += step
        i += 1


def encode(codec: Codec, data: bytes) -> bytes:
    stage = codec.encoder()
    out = [stage.feed(p) for p in _pieces(data)]
    return b"".join([*out, stage.flush()])


def decode(codec: Codec, data: bytes, shift: int = 3) -> bytes:
    stage = codec.decoder()
    out = [stage.feed(p) for p in _pieces(data, shift)]
    return b"".join([*out, stage.flush()])


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("name", CODECS)
def test_round_trip(name: str, size: str) -> None:
    codec = CODECS[name]()
    data = SIZES[size]
    encoded = encode(codec, data)
    assert decode(codec, encoded) == data
    assert decode(codec, encoded, shift=0) == data
    if name not in ("none", "age", "aes"):
        # one big feed gives the same stream as many small ones
        stage = codec.encoder()
        assert stage.feed(data) + stage.flush() == encoded


def test_compression_compresses() -> None:
    data = _mixed(1 << 20)
    for name in ("zstd-1", "zstd-3", "gzip"):
        assert len(encode(CODECS[name](), data)) < 0.7 * len(data), name


@pytest.mark.parametrize("name", ["age", "aes"])
def test_encoder_holds_back_at_most_one_chunk(name: str) -> None:
    stage = CODECS[name]().encoder()
    fed = out = 0
    for _ in range(10):
        chunk = os.urandom(1 << 20)
        fed += len(chunk)
        out += len(stage.feed(chunk))
        assert out >= fed - K
    assert len(stage.flush()) <= K + 17


# -- layout: what age and our aes format must look like --------------------------------------


@pytest.mark.parametrize(
    ("plain", "chunks"), [(0, [0]), (1, [1]), (K, [K]), (K + 1, [K, 1]), (2 * K, [K, K])]
)
def test_age_chunking_matches_spec(plain: int, chunks: list[int]) -> None:
    blob = encode(AgeCodec([RECIPIENT]), os.urandom(plain))
    header_len = blob.index(b"\n---") + 1
    header_len = blob.index(b"\n", header_len) + 1
    assert blob.startswith(b"age-encryption.org/v1\n-> X25519 ")
    assert len(blob) == header_len + 16 + sum(c + 16 for c in chunks)


@pytest.mark.parametrize(("plain", "chunks"), [(0, [0]), (K, [K]), (K + 1, [K, 1])])
def test_aes_layout(plain: int, chunks: list[int]) -> None:
    blob = encode(AesGcmCodec(AES_KEY), os.urandom(plain))
    assert blob.startswith(MAGIC) and blob[len(MAGIC)] == 1
    assert len(blob) == HEADER_SIZE + sum(1 + c + 16 for c in chunks)
    pos = HEADER_SIZE
    for i, c in enumerate(chunks):
        assert blob[pos] == (1 if i == len(chunks) - 1 else 0)
        pos += 1 + c + 16


# -- fresh keys and nonces --------------------------------------------------------------


@pytest.mark.parametrize("name", ["age", "aes"])
def test_two_encryptions_differ(name: str) -> None:
    codec = CODECS[name]()
    data = bytes(3 * K)
    a, b = encode(codec, data), encode(codec, data)
    assert a != b
    # equal plaintext chunks never give equal ciphertext chunks (no nonce reuse)
    unit = K + 17 if name == "aes" else K + 16
    tail = a[-3 * unit :]
    assert len({tail[i : i + 1000] for i in range(0, len(tail), unit)}) == 3
    assert a[-1000:] != b[-1000:]


# -- corruption -------------------------------------------------------------------------


def _positions(blob: bytes, header: int) -> list[int]:
    every_header = list(range(min(header, len(blob))))
    sample = list(range(header, len(blob), 997))
    edges = [
        p
        for k in range(1, len(blob) // K + 1)
        for p in (k * (K + 16) + header - 1, k * (K + 17) + header)
    ]
    tail = list(range(max(0, len(blob) - 20), len(blob)))
    return sorted({p for p in every_header + sample + edges + tail if 0 <= p < len(blob)})


def _flip(blob: bytes, pos: int) -> bytes:
    damaged = bytearray(blob)
    damaged[pos] ^= 0x04
    return bytes(damaged)


def test_aes_flipped_byte_anywhere_is_corrupted() -> None:
    codec = AesGcmCodec(AES_KEY)
    blob = encode(codec, os.urandom(3 * K + 500))
    for pos in _positions(blob, HEADER_SIZE + 20):
        with pytest.raises(CorruptedData):
            decode(codec, _flip(blob, pos))


def test_age_flipped_byte_anywhere_is_detected() -> None:
    codec = AgeCodec([RECIPIENT], [IDENTITY])
    blob = encode(codec, os.urandom(3 * K + 500))
    stanza_start = blob.index(b"\n-> ") + 1
    stanza_end = blob.index(b"\n---")
    for pos in _positions(blob, blob.index(b"\n---") + 60):
        # a damaged X25519 stanza reads exactly like one for another key
        expected = (
            (CorruptedData, NoMatchingIdentity)
            if stanza_start <= pos < stanza_end
            else CorruptedData
        )
        with pytest.raises(expected):
            decode(codec, _flip(blob, pos))


@pytest.mark.parametrize("name", ["zstd-1", "gzip"])
def test_compressed_flipped_byte_is_detected(name: str) -> None:
    codec = CODECS[name]()
    blob = encode(codec, _mixed(300_000))
    # gzip's mtime, extra-flags and OS bytes (4..9) are not covered by any check
    start = 10 if name == "gzip" else 0
    for pos in range(start, len(blob), max(1, len(blob) // 300)):
        with pytest.raises(IntegrityError):
            decode(codec, _flip(blob, pos))
    with pytest.raises(IntegrityError):
        decode(codec, _flip(blob, len(blob) - 1))


@pytest.mark.parametrize("name", ["zstd-1", "gzip", "age", "aes"])
def test_trailing_data_is_corrupted(name: str) -> None:
    codec = CODECS[name]()
    blob = encode(codec, os.urandom(K + 10))
    for junk in (b"\x00", b"garbage after the end" * 10):
        with pytest.raises(CorruptedData):
            decode(codec, blob + junk)
    # a second whole stream appended is not allowed for the encrypted formats either
    if name in ("age", "aes"):
        with pytest.raises(CorruptedData):
            decode(codec, blob + encode(codec, b"more"))


# -- truncation -------------------------------------------------------------------------


def _truncations(name: str, blob: bytes) -> list[tuple[int, type[Exception]]]:
    """(cut point, expected error) for a 3 KiB + 3 * 64 KiB plaintext."""
    if name in ("zstd-1", "gzip"):
        return [
            (n, TruncatedData)
            for n in (0, 1, 5, len(blob) // 3, len(blob) // 2, len(blob) - 4, len(blob) - 1)
        ]
    if name == "aes":
        unit, h = K + 17, HEADER_SIZE
        return [
            (0, TruncatedData),
            (10, TruncatedData),
            (h - 1, TruncatedData),
            (h, TruncatedData),
            (h + 5, TruncatedData),
            (h + unit, TruncatedData),
            (h + unit + 1000, TruncatedData),
            (h + 2 * unit, TruncatedData),
            (h + 3 * unit - 1, TruncatedData),
            (h + 3 * unit, TruncatedData),
            # inside the last chunk nothing tells a cut from damage
            (len(blob) - 1, CorruptedData),
        ]
    assert name == "age"
    unit = K + 16
    h = blob.index(b"\n", blob.index(b"\n---") + 1) + 1
    return [
        # the header and nonce ending early is a header failure, as in the spec's vectors
        (0, CorruptedData),
        (30, CorruptedData),
        (h - 1, CorruptedData),
        (h, CorruptedData),
        (h + 15, CorruptedData),
        (h + 16, TruncatedData),
        (h + 16 + unit, TruncatedData),
        (h + 16 + 2 * unit, TruncatedData),
        (h + 16 + 3 * unit, TruncatedData),
        # a cut inside a chunk fails its authentication: age cannot tell it from damage
        (h + 16 + unit + 500, CorruptedData),
        (len(blob) - 1, CorruptedData),
    ]


@pytest.mark.parametrize("name", ["zstd-1", "gzip", "age", "aes"])
def test_truncation_is_detected(name: str) -> None:
    codec = CODECS[name]()
    blob = encode(codec, os.urandom(3 * K + 3000))
    for cut, expected in _truncations(name, blob):
        with pytest.raises(expected) as info:
            decode(codec, blob[:cut])
        assert type(info.value) is expected, (cut, info.value)


# -- keys -------------------------------------------------------------------------------


def test_wrong_age_identity() -> None:
    blob = encode(AgeCodec([RECIPIENT]), b"secret dump")
    with pytest.raises(NoMatchingIdentity):
        decode(AgeCodec(identities=[OTHER_IDENTITY]), blob)


def test_age_any_recipient_decrypts_and_identity_files_are_accepted() -> None:
    blob = encode(AgeCodec([RECIPIENT, OTHER_RECIPIENT]), b"secret dump")
    key_file = f"# created: now\n# public key: {OTHER_RECIPIENT}\n\n{OTHER_IDENTITY}\n"
    assert decode(AgeCodec(identities=[key_file]), blob) == b"secret dump"
    assert decode(AgeCodec(identities=[OTHER_IDENTITY, IDENTITY]), blob) == b"secret dump"


def test_wrong_aes_key() -> None:
    blob = encode(AesGcmCodec(AES_KEY), b"secret dump")
    with pytest.raises(WrongKey):
        decode(AesGcmCodec(bytes(32)), blob)


@pytest.mark.parametrize(
    "make_stage",
    [
        lambda: AgeCodec(["age1notarecipient"]).encoder(),
        lambda: AgeCodec([RECIPIENT[:-1] + ("q" if RECIPIENT[-1] != "q" else "p")]).encoder(),
        lambda: AgeCodec([]).encoder(),
        lambda: AgeCodec(identities=[IDENTITY[:-2] + "QQ"]).decoder(),
        lambda: AgeCodec(identities=[IDENTITY.lower()]).decoder(),
        lambda: AgeCodec(identities=["# only a comment\n"]).decoder(),
        lambda: AesGcmCodec(b"too short").encoder(),
        lambda: AesGcmCodec(b"k" * 33).decoder(),
    ],
)
def test_invalid_keys(make_stage: Callable[[], object]) -> None:
    with pytest.raises(InvalidKey) as info:
        make_stage()
    assert IDENTITY[16:] not in str(info.value)


def test_key_helpers() -> None:
    assert recipient_of(IDENTITY) == RECIPIENT
    assert recipient_of(f"# comment\n{IDENTITY}\n") == RECIPIENT
    fp = fingerprint(RECIPIENT)
    assert len(fp) == 16 and int(fp, 16) >= 0
    assert fingerprint(RECIPIENT.upper()) == fp != fingerprint(OTHER_RECIPIENT)
    assert AgeCodec([RECIPIENT]).fingerprints == [fp]
    assert IDENTITY not in repr(AgeCodec([RECIPIENT], [IDENTITY]))
    with pytest.raises(InvalidKey):
        recipient_of(IDENTITY + "\n" + OTHER_IDENTITY)


def test_registry() -> None:
    assert make("none").ext == ""
    assert make("zstd", level=3).ext == "zst"
    assert make("gzip").ext == "gz"
    assert make("age", recipients=[RECIPIENT]).ext == "age"
    assert make("aes-256-gcm", key=AES_KEY).ext == "aes"
    with pytest.raises(CorruptedData):
        make("rot13")
