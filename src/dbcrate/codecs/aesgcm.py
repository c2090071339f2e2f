"""The ``aes-256-gcm`` codec: a chunked AES-256-GCM format keyed by a shared secret.

The format is documented byte by byte in docs/format.md; in short::

    header  = magic "dbcrate/aes-256-gcm\\n" | version 0x01 | salt (32 random bytes)
              | key check (16) | checksum (first 8 bytes of SHA-256 of the above)
    okm     = HKDF-SHA256(master key, salt, info="dbcrate aes-256-gcm v1", 48 bytes)
    key     = okm[0:32]; key check = okm[32:48]
    chunk i = flag (0x00, or 0x01 for the last) | AES-256-GCM(key, nonce, plaintext,
              associated data = header), nonce = i as 11 bytes big-endian | flag

Plaintext chunks are 64 KiB except the last (empty only if the whole stream is). A
fresh salt per stream gives every backup its own key, so counter nonces never repeat.

Errors while decoding: the key check differs -> ``WrongKey``; a bad header, a chunk
failing authentication or data after the last chunk -> ``CorruptedData``; the stream
ending inside the header, between chunks or inside a non-last chunk ->
``TruncatedData`` (an end inside the last chunk fails authentication: ``CorruptedData``).
"""

from __future__ import annotations

import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dbcrate.codecs.stream_aead import PrefixedSealer, StreamOpener, StreamSealer
from dbcrate.errors import CorruptedData, InvalidKey, TruncatedData, WrongKey
from dbcrate.streams import Stage

MAGIC = b"dbcrate/aes-256-gcm\n"
VERSION = 1
SALT_SIZE = 32
CHECK_SIZE = 16
SUM_SIZE = 8
HEADER_SIZE = len(MAGIC) + 1 + SALT_SIZE + CHECK_SIZE + SUM_SIZE  # 77
INFO = b"dbcrate aes-256-gcm v1"
KEY_SIZE = 32


def derive(master: bytes, salt: bytes) -> tuple[bytes, bytes]:
    """``(data key, key check value)`` of a master key and a stream's salt."""
    okm = HKDF(algorithm=hashes.SHA256(), length=KEY_SIZE + CHECK_SIZE, salt=salt, info=INFO)
    derived = okm.derive(master)
    return derived[:KEY_SIZE], derived[KEY_SIZE:]


def _checksum(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()[:SUM_SIZE]


def _check_key(key: bytes) -> bytes:
    if not isinstance(key, bytes | bytearray) or len(key) != KEY_SIZE:
        raise InvalidKey(
            "the aes-256-gcm key must be 32 bytes (a base64-encoded 256-bit encryption_key)",
            hint="generate one with `head -c 32 /dev/urandom | base64`",
        )
    return bytes(key)


def _aes_encoder(master: bytes) -> PrefixedSealer:
    salt = os.urandom(SALT_SIZE)
    key, check = derive(master, salt)
    head = MAGIC + bytes([VERSION]) + salt + check
    header = head + _checksum(head)
    return PrefixedSealer(header, StreamSealer(AESGCM(key), header, marker=True))


class _AesDecoder:
    def __init__(self, master: bytes) -> None:
        self._master = master
        self._buf = bytearray()
        self._opener: StreamOpener | None = None

    def feed(self, data: bytes) -> bytes:
        """Decrypt ``data``.

        Raises ``WrongKey`` if the key is not the one the stream was made with,
        ``CorruptedData`` for a bad header or chunk, ``TruncatedData`` (see module doc).
        """
        if self._opener is not None:
            return self._opener.feed(data)
        buf = self._buf
        buf += data
        n = min(len(buf), len(MAGIC))
        if buf[:n] != MAGIC[:n]:
            raise CorruptedData("not a dbcrate aes-256-gcm stream (bad magic)")
        if len(buf) < HEADER_SIZE:
            return b""
        header = bytes(buf[:HEADER_SIZE])
        rest = bytes(buf[HEADER_SIZE:])
        buf.clear()
        self._opener = self._open_header(header)
        return self._opener.feed(rest)

    def _open_header(self, header: bytes) -> StreamOpener:
        at = len(MAGIC)
        if header[at] != VERSION:
            raise CorruptedData(
                f"unsupported aes-256-gcm format version {header[at]}",
                hint="upgrade dbcrate, or the stream is damaged",
            )
        salt = header[at + 1 : at + 1 + SALT_SIZE]
        check = header[at + 1 + SALT_SIZE : HEADER_SIZE - SUM_SIZE]
        if not hmac.compare_digest(_checksum(header[:-SUM_SIZE]), header[-SUM_SIZE:]):
            raise CorruptedData("aes-256-gcm header checksum mismatch (the header is damaged)")
        key, expected = derive(self._master, salt)
        if not hmac.compare_digest(check, expected):
            raise WrongKey("the aes-256-gcm key is not the one this backup was encrypted with")
        return StreamOpener(AESGCM(key), header, marker=True, what="aes-256-gcm")

    def flush(self) -> bytes:
        """Decrypt the last chunk.

        Raises ``TruncatedData`` if the stream ended early, ``CorruptedData`` if the
        last chunk is bad.
        """
        if self._opener is None:
            raise TruncatedData("aes-256-gcm stream ended inside its header")
        return self._opener.flush()


class AesGcmCodec:
    """Symmetric AES-256-GCM encryption (``aes-256-gcm``, extension ``aes``).

    ``key`` is the 32-byte master key (the config's base64 ``encryption_key``,
    decoded); each stream derives its own key from it and a random salt.
    """

    name = "aes-256-gcm"
    ext = "aes"

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "AesGcmCodec(key=<hidden>)"

    def encoder(self) -> Stage:
        """A Stage encrypting one stream. Raises ``InvalidKey`` if the key is not 32 bytes."""
        return _aes_encoder(_check_key(self._key))

    def decoder(self) -> Stage:
        """A Stage decrypting one stream; see the module doc for what its
        ``feed``/``flush`` raise. Raises ``InvalidKey`` if the key is not 32 bytes."""
        return _AesDecoder(_check_key(self._key))
