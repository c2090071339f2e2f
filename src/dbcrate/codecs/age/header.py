"""The age v1 header and ASCII armor, parsed as strictly as the reference implementation.

Spec: https://age-encryption.org/v1. A header is the intro line, one or more stanzas
(``-> TYPE ARGS...`` then a base64 body wrapped at 64 columns whose last line is
shorter than 64 columns, possibly empty) and the ``--- MAC`` line. Base64 is the
standard alphabet, unpadded and canonical. Every violation raises ``CorruptedData``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dbcrate.errors import CorruptedData

INTRO = b"age-encryption.org/v1\n"
FOOTER = b"---"
STANZA = b"->"
COLUMNS = 64
BYTES_PER_LINE = COLUMNS // 4 * 3
#: The largest header we accept (1 MiB; docs/format.md). The reference age has no fixed
#: limit, but its stanzas are small: a header of a thousand X25519 recipients is ~120 KiB.
MAX_HEADER = 1 << 20


def b64encode(data: bytes) -> bytes:
    """Unpadded standard base64."""
    return base64.b64encode(data).rstrip(b"=")


def b64decode(text: bytes) -> bytes:
    """Decode unpadded, canonical standard base64; raise ``ValueError`` otherwise."""
    if b"=" in text or len(text) % 4 == 1:
        raise ValueError("not unpadded base64")
    try:
        data = base64.b64decode(text + b"=" * (-len(text) % 4), validate=True)
    except binascii.Error:
        raise ValueError("invalid base64") from None
    if b64encode(data) != text:
        raise ValueError("non-canonical base64")
    return data


@dataclass(frozen=True)
class Stanza:
    type: str
    args: tuple[str, ...]
    body: bytes


def _valid_arg(arg: bytes) -> bool:
    return bool(arg) and all(33 <= c <= 126 for c in arg)


def encode_without_mac(stanzas: list[Stanza]) -> bytes:
    """The header from its intro up to and including ``---``: the input of its MAC."""
    out = bytearray(INTRO)
    for s in stanzas:
        out += b" ".join([STANZA, s.type.encode(), *(a.encode() for a in s.args)]) + b"\n"
        body = b64encode(s.body)
        for i in range(0, len(body), COLUMNS):
            out += body[i : i + COLUMNS] + b"\n"
        if len(body) % COLUMNS == 0:
            out += b"\n"  # the last line must be short, so it is empty here
    return bytes(out + FOOTER)


def header_mac(file_key: bytes, stanzas: list[Stanza]) -> bytes:
    """HMAC-SHA256 of the header under HKDF-SHA256(file_key, info="header")."""
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=b"header").derive(file_key)
    return hmac.new(key, encode_without_mac(stanzas), hashlib.sha256).digest()


def encode(file_key: bytes, stanzas: list[Stanza]) -> bytes:
    """The complete header, MAC line included."""
    mac = header_mac(file_key, stanzas)
    return encode_without_mac(stanzas) + b" " + b64encode(mac) + b"\n"


def check_start(buf: bytes | bytearray) -> None:
    """Raise ``CorruptedData`` as soon as the bytes cannot be the start of an age file."""
    n = min(len(buf), len(INTRO))
    if buf[:n] != INTRO[:n]:
        raise CorruptedData("not an age v1 file (bad or unsupported intro line)")


class HeaderScanner:
    """Finds the end of a binary age header in a stream, incrementally and bounded.

    Every byte is looked at once (a feed resumes where the last one stopped), and the
    header may be at most ``MAX_HEADER`` bytes: past that, or once the intro line is
    wrong, ``feed`` raises ``CorruptedData``. At most ``MAX_HEADER`` plus one fed piece
    is ever buffered.
    """

    def __init__(self) -> None:
        self.buf = bytearray()
        self._line_start = 0  # where the line being scanned starts
        self._scan = 0  # bytes before this were searched for a newline already

    def feed(self, data: bytes | bytearray) -> int | None:
        """Add ``data``; return the header's length once it is complete in ``buf``.

        Raises ``CorruptedData`` for a bad intro or a header longer than ``MAX_HEADER``.
        """
        buf = self.buf
        buf += data
        check_start(buf)
        while True:
            nl = buf.find(b"\n", self._scan)
            if nl < 0 or nl >= MAX_HEADER:
                self._scan = len(buf)
                if self._scan >= MAX_HEADER:
                    raise CorruptedData(
                        f"age header is longer than {MAX_HEADER} bytes or has no end"
                    )
                return None
            start, self._line_start = self._line_start, nl + 1
            self._scan = nl + 1
            if start > 0 and buf.startswith(FOOTER, start):
                return nl + 1


def parse(header: bytes) -> tuple[list[Stanza], bytes]:
    """Parse a complete header (as delimited by ``header_end``) into stanzas and MAC.

    Raises ``CorruptedData`` for any deviation from the format.
    """
    if not header.startswith(INTRO):
        raise CorruptedData("not an age v1 file (bad or unsupported intro line)")
    lines = header[len(INTRO) :].split(b"\n")
    lines.pop()  # the header ends with "\n"
    stanzas: list[Stanza] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        i += 1
        prefix, *args = line.split(b" ")
        if line.startswith(FOOTER):
            if prefix != FOOTER or len(args) != 1 or i != len(lines):
                raise CorruptedData("age header has a malformed closing line")
            try:
                mac = b64decode(args[0])
            except ValueError:
                mac = b""
            if len(mac) != 32:
                raise CorruptedData("age header has a malformed MAC")
            return stanzas, mac
        if not line.startswith(STANZA) or prefix != STANZA or not args:
            raise CorruptedData("age header has a malformed line")
        if not all(_valid_arg(a) for a in args):
            raise CorruptedData("age header has a malformed stanza argument")
        body = bytearray()
        while True:
            if i >= len(lines):
                raise CorruptedData("age header stanza has no final body line")
            try:
                chunk = b64decode(lines[i])
            except ValueError:
                raise CorruptedData("age header stanza has a malformed body line") from None
            i += 1
            if len(chunk) > BYTES_PER_LINE:
                raise CorruptedData("age header stanza body line is too long")
            body += chunk
            if len(chunk) < BYTES_PER_LINE:
                break
        stanzas.append(Stanza(args[0].decode(), tuple(a.decode() for a in args[1:]), bytes(body)))
    raise CorruptedData("age header has no closing line")


# -- ASCII armor ---------------------------------------------------------------------------

ARMOR_BEGIN = b"-----BEGIN AGE ENCRYPTED FILE-----"
ARMOR_END = b"-----END AGE ENCRYPTED FILE-----"
_WHITESPACE = b" \t\n\r\v\f"
_MAX_WHITESPACE = 1024


def looks_armored(buf: bytes | bytearray) -> bool | None:
    """True if ``buf`` starts (after whitespace) like armor, False if not, None if unsure."""
    stripped = bytes(buf[: _MAX_WHITESPACE + 5]).lstrip(_WHITESPACE)
    if not stripped:
        return None if len(buf) <= _MAX_WHITESPACE else False
    if len(stripped) < 5:
        return None if b"-----".startswith(stripped) else False
    return stripped.startswith(b"-----")


class ArmorDecoder:
    """Streams the binary age file out of its ASCII armor (strict PEM, spec rules).

    Lines end in LF or CRLF; body lines hold exactly 64 columns of padded, canonical
    base64 except the last, which may be shorter; only whitespace (up to 1 KiB) may
    surround the armor. Violations raise ``CorruptedData``.
    """

    def __init__(self) -> None:
        self._buf = bytearray()
        self._state = "lead"  # lead, begin, body, trail
        self._ws = 0
        self._last_line_seen = False  # a short or padded line was read: END must follow

    def _fail(self, why: str) -> CorruptedData:
        return CorruptedData(f"invalid age armor: {why}")

    def _trail(self, data: bytes | bytearray) -> None:
        self._ws += len(data)
        if data.strip(_WHITESPACE) or self._ws > _MAX_WHITESPACE:
            raise self._fail("data after the end line")

    def _line(self, line: bytes) -> bytes:
        if line.endswith(b"\r"):
            line = line[:-1]
        if self._state == "begin":
            if line != ARMOR_BEGIN:
                raise self._fail("bad begin line")
            self._state = "body"
            return b""
        if line == ARMOR_END:
            self._state = "trail"
            self._ws = 0
            return b""
        if self._last_line_seen:
            raise self._fail("a short line before the end")
        if not line or len(line) > COLUMNS or len(line) % 4:
            raise self._fail("bad line length")
        try:
            data = base64.b64decode(line, validate=True)
        except binascii.Error:
            raise self._fail("bad base64") from None
        if base64.b64encode(data) != line:
            raise self._fail("non-canonical base64")
        if len(line) < COLUMNS or line.endswith(b"="):
            self._last_line_seen = True
        return data

    def _skip_blank_lines(self) -> bool:
        """Drop leading whitespace-only lines; True once the begin line has started.

        Like the reference age, whitespace is skipped only as whole lines: a begin line
        with whitespace before or after the marker is rejected by ``_line``. Raises
        ``CorruptedData`` past 1 KiB of leading whitespace.
        """
        buf = self._buf
        while True:
            nl = buf.find(b"\n")
            line = buf if nl < 0 else buf[:nl]
            if line.strip(_WHITESPACE):
                self._state = "begin"
                return True
            if self._ws + (len(buf) if nl < 0 else nl + 1) > _MAX_WHITESPACE:
                raise self._fail("too much leading whitespace")
            if nl < 0:
                return False
            self._ws += nl + 1
            del buf[: nl + 1]

    @property
    def buffered(self) -> int:
        """Bytes held back until their line is complete."""
        return len(self._buf)

    def feed(self, data: bytes) -> bytes:
        """Return the binary bytes of every complete armored line in ``data``.

        Raises ``CorruptedData`` on any armor violation.
        """
        if self._state == "trail":
            self._trail(data)
            return b""
        buf = self._buf
        buf += data
        if self._state == "lead" and not self._skip_blank_lines():
            return b""
        out: list[bytes] = []
        start = 0
        while True:
            end = buf.find(b"\n", start)
            if end < 0:
                break
            out.append(self._line(bytes(buf[start:end])))
            start = end + 1
            if self._state == "trail":
                rest = bytes(buf[start:])
                buf.clear()
                self._trail(rest)
                return b"".join(out)
        del buf[:start]
        if len(buf) > COLUMNS + len(ARMOR_BEGIN):
            raise self._fail("line too long")
        return b"".join(out)

    def flush(self) -> bytes:
        """Finish the armor (the end line may lack its newline).

        Raises ``CorruptedData`` if the end line is missing.
        """
        out = b""
        if self._state in ("begin", "body") and self._buf:
            line = bytes(self._buf)
            self._buf.clear()
            out = self._line(line)
        if self._state != "trail":
            raise self._fail("missing end line (truncated?)")
        return out
