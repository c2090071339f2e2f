"""age decoding: a bounded, incremental header scan and armor begin lines as strict as
the reference age (checked against the Debian ``age`` CLI when it is installed)."""

from __future__ import annotations

import base64
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from dbcrate.codecs.age import AgeCodec, _AgeDecoder, generate_identity
from dbcrate.codecs.age.header import ARMOR_BEGIN, MAX_HEADER, HeaderScanner
from dbcrate.errors import CorruptedData

IDENTITY, RECIPIENT = generate_identity()
MiB = 1 << 20
INTRO = b"age-encryption.org/v1\n"


def _decoder() -> _AgeDecoder:
    stage = AgeCodec(identities=[IDENTITY]).decoder()
    assert isinstance(stage, _AgeDecoder)
    return stage




@pytest.mark.parametrize("piece", [64 * 1024, 1 << 20])
def test_endless_header_is_refused_with_bounded_buffer(piece: int) -> None:
    stage = _decoder()
    # "\n---" never followed by a newline: the quadratic case of issue 8
    stage.feed(INTRO + b"-> X25519 abc\nQUJD\n---")
    garbage = b"A" * piece
    fed, most = 0, 0
    with pytest.raises(CorruptedData, match="longer than"):
        while fed < 256 * MiB:
            stage.feed(garbage)
            fed += piece
            most = max(most, stage.buffered)
    assert fed <= MAX_HEADER + piece  # refused as soon as the bound was passed
    assert most <= MAX_HEADER + piece


def test_scanner_looks_at_each_byte_once() -> None:
    """A header fed one byte at a time scans each byte once (no rescans per feed)."""
    scanner = HeaderScanner()
    header = INTRO + b"-> X25519 abc\n" + b"QUJD\n" + b"--- mac\n"
    ends = [scanner.feed(header[i : i + 1]) for i in range(len(header))]
    assert ends[:-1] == [None] * (len(header) - 1)
    assert ends[-1] == len(header)
    assert scanner._scan == len(header)  # the next feed resumes here


def test_header_just_under_the_bound_is_parsed_not_refused() -> None:
    """A stanza body filling the header up to MAX_HEADER reaches the parser (which then
    finds the MAC wrong), and one byte more is refused by the scanner."""
    body_lines = (MAX_HEADER - 200) // 65
    stanza = b"-> X25519 abc\n" + (b"A" * 64 + b"\n") * body_lines + b"\n"
    header = INTRO + stanza + b"--- " + b"A" * 43 + b"\n"
    pad = MAX_HEADER - len(header)
    header = header.replace(b"-> X25519 abc", b"-> X25519 abc " + b"x" * (pad - 1), 1)
    assert len(header) == MAX_HEADER
    scanner = HeaderScanner()
    assert scanner.feed(header) == MAX_HEADER
    too_long = header.replace(b"abc ", b"abc x", 1)
    with pytest.raises(CorruptedData, match="longer than"):
        HeaderScanner().feed(too_long)


def _armored(plain: bytes = b"hello\n") -> bytes:
    stage = AgeCodec(recipients=[RECIPIENT]).encoder()
    binary = stage.feed(plain) + stage.flush()
    b64 = base64.b64encode(binary)
    lines = [b64[i : i + 64] for i in range(0, len(b64), 64)]
    return ARMOR_BEGIN + b"\n" + b"\n".join(lines) + b"\n-----END AGE ENCRYPTED FILE-----\n"


ARMOR_CASES: dict[str, tuple[Callable[[bytes], bytes], bool]] = {
    "plain": (lambda a: a, True),
    "crlf begin": (lambda a: a.replace(ARMOR_BEGIN + b"\n", ARMOR_BEGIN + b"\r\n", 1), True),
    "trailing whitespace lines": (lambda a: a + b"  \n\n", True),
    "space before begin": (lambda a: b" " + a, False),
    "tab before begin": (lambda a: b"\t" + a, False),
    "blank line then space before begin": (lambda a: b"\n  " + a, False),
    "space after begin": (lambda a: a.replace(ARMOR_BEGIN, ARMOR_BEGIN + b" ", 1), False),
    "tab after begin": (lambda a: a.replace(ARMOR_BEGIN, ARMOR_BEGIN + b"\t", 1), False),
    "space after end": (lambda a: a.replace(b"FILE-----\n", b"FILE----- \n")
                        .replace(ARMOR_BEGIN + b" ", ARMOR_BEGIN), False),
}


@pytest.mark.parametrize("case", list(ARMOR_CASES))
def test_armor_begin_line_whitespace(case: str) -> None:
    mutate, accepted = ARMOR_CASES[case]
    data = mutate(_armored())
    for piece in (1, 5, len(data)):
        stage = _decoder()
        if accepted:
            out = b"".join(stage.feed(data[i : i + piece]) for i in range(0, len(data), piece))
            assert out + stage.flush() == b"hello\n"
        else:
            with pytest.raises(CorruptedData, match="armor"):
                for i in range(0, len(data), piece):
                    stage.feed(data[i : i + piece])
                stage.flush()


def test_leading_blank_lines_are_skipped_like_the_age_library() -> None:
    """age's armor reader skips whitespace-only lines before the begin line (the 1.1 CLI
    peeks for the begin line and refuses even those; we follow the library and spec)."""
    data = b"\n \r\n\t\n" + _armored()
    stage = _decoder()
    assert stage.feed(data) + stage.flush() == b"hello\n"
    with pytest.raises(CorruptedData):
        _decoder().feed(b"\n" * 1100 + _armored())


@pytest.mark.skipif(shutil.which("age") is None, reason="the age CLI is not installed")
@pytest.mark.parametrize("case", list(ARMOR_CASES))
def test_reference_age_agrees_on_armor(case: str, tmp_path: Path) -> None:
    mutate, accepted = ARMOR_CASES[case]
    (tmp_path / "id").write_text(IDENTITY + "\n")
    (tmp_path / "f").write_bytes(mutate(_armored()))
    r = subprocess.run(["age", "-d", "-i", str(tmp_path / "id"), str(tmp_path / "f")],
                       capture_output=True, check=False)
    assert (r.returncode == 0) == accepted, r.stderr
    if accepted:
        assert r.stdout == b"hello\n"
