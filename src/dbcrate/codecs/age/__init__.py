"""The ``age`` codec: exactly the age v1 file format (https://age-encryption.org/v1).

Files are encrypted to X25519 recipients (``age1...``) and decrypted with identities
(``AGE-SECRET-KEY-1...``), so ``age -d -i key.txt`` reads what we write and we read
what ``age -r`` writes, binary or ASCII-armored. The payload is STREAM
ChaCha20-Poly1305 in 64 KiB chunks under HKDF-SHA256(file key, nonce, "payload").
Decoding is as strict as the reference implementation. Secrets never appear in errors.

Errors: no identity opens an X25519 stanza -> ``NoMatchingIdentity``; a bad header,
MAC, base64 or stanza, or a payload chunk failing authentication -> ``CorruptedData``
(a header or nonce cut short is a header failure, so it is ``CorruptedData`` too); the
payload ending before its last chunk -> ``TruncatedData``; malformed identity or
recipient strings -> ``InvalidKey``.
"""

from __future__ import annotations

import hashlib
import hmac
import os
from collections.abc import Sequence

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dbcrate.codecs.age import bech32
from dbcrate.codecs.age import header as age_header
from dbcrate.codecs.age.header import ArmorDecoder, Stanza
from dbcrate.codecs.stream_aead import PrefixedSealer, StreamOpener, StreamSealer
from dbcrate.errors import CorruptedData, InvalidKey, NoMatchingIdentity
from dbcrate.streams import Stage

_IDENTITY_HRP = "age-secret-key-"
_RECIPIENT_HRP = "age"
_X25519_INFO = b"age-encryption.org/v1/X25519"
_FILE_KEY_SIZE = 16
_NONCE_SIZE = 16
_ZERO_NONCE = bytes(12)


def _hkdf(ikm: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=salt, info=info).derive(ikm)


# -- keys --------------------------------------------------------------------------------


def _parse_recipient(recipient: str) -> bytes:
    """The 32-byte X25519 public key of an ``age1...`` string; ``InvalidKey`` if malformed."""
    try:
        hrp, data = bech32.decode(recipient.strip())
    except bech32.Bech32Error:
        hrp, data = "", b""
    if hrp != _RECIPIENT_HRP or len(data) != 32:
        raise InvalidKey(
            "malformed age recipient (expected an X25519 public key 'age1...')",
            hint="copy the recipient printed by `dbcrate keygen` or `age-keygen -y`",
        )
    return data


def _parse_identity(line: str) -> X25519PrivateKey:
    try:
        hrp, data = bech32.decode(line)
    except bech32.Bech32Error:
        hrp, data = "", b""
    if not line.startswith("AGE-SECRET-KEY-1") or hrp != _IDENTITY_HRP or len(data) != 32:
        raise InvalidKey(
            "malformed age identity (expected an X25519 'AGE-SECRET-KEY-1...' line)",
            hint="pass an identity file made by `dbcrate keygen` or `age-keygen`",
        )
    return X25519PrivateKey.from_private_bytes(data)


def _parse_identities(identities: Sequence[str]) -> list[X25519PrivateKey]:
    """Keys from identity strings or identity file contents ('#' comments, blank lines)."""
    keys: list[X25519PrivateKey] = []
    for text in identities:
        for raw in text.splitlines():
            line = raw.strip()
            if line and not line.startswith("#"):
                keys.append(_parse_identity(line))
    return keys


def _encode_identity(key: X25519PrivateKey) -> str:
    return bech32.encode(_IDENTITY_HRP, key.private_bytes_raw()).upper()


def _encode_recipient(key: X25519PrivateKey) -> str:
    return bech32.encode(_RECIPIENT_HRP, key.public_key().public_bytes_raw())


def generate_identity() -> tuple[str, str]:
    """A new X25519 identity: ``(identity string, recipient string)``. Raises nothing."""
    key = X25519PrivateKey.generate()
    return _encode_identity(key), _encode_recipient(key)


def recipient_of(identity: str) -> str:
    """The ``age1...`` recipient of one identity (a string or an identity file's text).

    Raises ``InvalidKey`` if it is malformed or does not hold exactly one identity.
    """
    keys = _parse_identities([identity])
    if len(keys) != 1:
        raise InvalidKey("expected exactly one age identity")
    return _encode_recipient(keys[0])


def fingerprint(recipient: str) -> str:
    """A short stable fingerprint of a recipient: 16 hex digits of SHA-256 of its
    canonical (lowercase) string. Raises ``InvalidKey`` if it is malformed."""
    canonical = bech32.encode(_RECIPIENT_HRP, _parse_recipient(recipient))
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


# -- X25519 stanzas -----------------------------------------------------------------------


def _wrap(file_key: bytes, recipient: bytes) -> Stanza:
    ephemeral = X25519PrivateKey.generate()
    share = ephemeral.public_key().public_bytes_raw()
    try:
        shared = ephemeral.exchange(X25519PublicKey.from_public_bytes(recipient))
    except ValueError:
        raise InvalidKey("age recipient is a low-order point (not a usable public key)") from None
    wrap_key = _hkdf(shared, share + recipient, _X25519_INFO)
    body = ChaCha20Poly1305(wrap_key).encrypt(_ZERO_NONCE, file_key, None)
    return Stanza("X25519", (age_header.b64encode(share).decode(),), body)


def _unwrap(key: X25519PrivateKey, stanza: Stanza) -> bytes | None:
    """The file key if ``key`` opens ``stanza``, None if it is not for this key.

    Raises ``CorruptedData`` if the stanza is malformed.
    """
    if len(stanza.args) != 1:
        raise CorruptedData("age X25519 stanza has the wrong number of arguments")
    try:
        share = age_header.b64decode(stanza.args[0].encode())
    except ValueError:
        share = b""
    if len(share) != 32:
        raise CorruptedData("age X25519 stanza has a malformed share")
    try:
        shared = key.exchange(X25519PublicKey.from_public_bytes(share))
    except ValueError:  # OpenSSL refuses the all-zero shared secret of low-order points
        shared = bytes(32)
    if not any(shared):
        raise CorruptedData("age X25519 stanza has a low-order share")
    if len(stanza.body) != _FILE_KEY_SIZE + 16:
        raise CorruptedData("age X25519 stanza has a body of the wrong size")
    public = key.public_key().public_bytes_raw()
    wrap_key = _hkdf(shared, share + public, _X25519_INFO)
    try:
        return ChaCha20Poly1305(wrap_key).decrypt(_ZERO_NONCE, stanza.body, None)
    except InvalidTag:
        return None


# -- stages ------------------------------------------------------------------------------


def _payload_aead(file_key: bytes, nonce: bytes) -> ChaCha20Poly1305:
    return ChaCha20Poly1305(_hkdf(file_key, nonce, b"payload"))


def _age_encoder(recipients: list[bytes]) -> PrefixedSealer:
    file_key = os.urandom(_FILE_KEY_SIZE)
    header = age_header.encode(file_key, [_wrap(file_key, r) for r in recipients])
    nonce = os.urandom(_NONCE_SIZE)
    sealer = StreamSealer(_payload_aead(file_key, nonce), None, marker=False)
    return PrefixedSealer(header + nonce, sealer)


class _AgeDecoder:
    def __init__(self, keys: list[X25519PrivateKey]) -> None:
        self._keys = keys
        self._raw = bytearray()  # input kept until we know whether it is armored
        self._armor: ArmorDecoder | None = None
        self._binary: bool = False
        self._header = age_header.HeaderScanner()
        self._buf = bytearray()  # the nonce bytes not yet used
        self._file_key: bytes | None = None
        self._opener: StreamOpener | None = None

    def feed(self, data: bytes) -> bytes:
        """Decrypt ``data``.

        Raises ``CorruptedData`` (bad armor, header, MAC or chunk),
        ``NoMatchingIdentity`` (no identity opens the header) or ``TruncatedData``.
        """
        if self._armor is None and not self._binary:
            self._raw += data
            armored = age_header.looks_armored(self._raw)
            if armored is None:
                return b""
            data = bytes(self._raw)
            self._raw.clear()
            if armored:
                self._armor = ArmorDecoder()
            else:
                self._binary = True
        if self._armor is not None:
            data = self._armor.feed(data)
        return self._feed_binary(data)

    def _feed_binary(self, data: bytes) -> bytes:
        if self._opener is not None:
            return self._opener.feed(data)
        buf = self._buf
        if self._file_key is None:
            end = self._header.feed(data)
            if end is None:
                return b""
            header = self._header.buf
            self._file_key = self._open_header(bytes(header[:end]))
            buf += header[end:]
            header.clear()
        else:
            buf += data
        if len(buf) < _NONCE_SIZE:
            return b""
        aead = _payload_aead(self._file_key, bytes(buf[:_NONCE_SIZE]))
        self._opener = StreamOpener(aead, None, marker=False, what="age")
        rest = bytes(buf[_NONCE_SIZE:])
        buf.clear()
        return self._opener.feed(rest)

    @property
    def buffered(self) -> int:
        """Input bytes held in memory, not yet decrypted (bounded by the header limit)."""
        armor = self._armor.buffered if self._armor is not None else 0
        return len(self._raw) + armor + len(self._header.buf) + len(self._buf)

    def _open_header(self, header: bytes) -> bytes:
        stanzas, mac = age_header.parse(header)
        if len(stanzas) > 1 and any(s.type == "scrypt" for s in stanzas):
            raise CorruptedData("age header mixes an scrypt stanza with others")
        file_key = None
        for key in self._keys:
            for stanza in stanzas:
                if stanza.type == "X25519":
                    file_key = _unwrap(key, stanza)
                    if file_key is not None:
                        break
            if file_key is not None:
                break
        if file_key is None:
            raise NoMatchingIdentity("none of the given age identities can decrypt this file")
        if not hmac.compare_digest(age_header.header_mac(file_key, stanzas), mac):
            raise CorruptedData("age header MAC mismatch (the header was modified)")
        return file_key

    def flush(self) -> bytes:
        """Finish decrypting.

        Raises ``CorruptedData`` if the header, nonce or armor is incomplete or the last
        chunk is bad, ``TruncatedData`` if the payload ends before its last chunk.
        """
        out = b""
        if self._armor is None and not self._binary:
            data = bytes(self._raw)
            self._raw.clear()
            self._binary = True
            out = self._feed_binary(data)
        if self._armor is not None:
            out = self._feed_binary(self._armor.flush())
        if self._opener is None:
            what = "header" if self._file_key is None else "payload nonce"
            raise CorruptedData(f"age file ends inside its {what} (truncated or not age)")
        return out + self._opener.flush()


class AgeCodec:
    """age v1 public-key encryption (``age``, extension ``age``)."""

    name = "age"
    ext = "age"

    def __init__(self, recipients: Sequence[str] = (), identities: Sequence[str] = ()) -> None:
        self._recipients = tuple(recipients)
        self._identities = tuple(identities)

    def __repr__(self) -> str:
        return f"AgeCodec(recipients={list(self._recipients)!r}, identities=<hidden>)"

    @property
    def fingerprints(self) -> list[str]:
        """The recipients' fingerprints, for manifests. Raises ``InvalidKey``."""
        return [fingerprint(r) for r in self._recipients]

    def encoder(self) -> Stage:
        """A Stage encrypting to every recipient.

        Raises ``InvalidKey`` if there is no recipient or one is malformed.
        """
        if not self._recipients:
            raise InvalidKey("age encryption needs at least one recipient")
        return _age_encoder([_parse_recipient(r) for r in self._recipients])

    def decoder(self) -> Stage:
        """A Stage decrypting with the identities; see the module doc for what its
        ``feed``/``flush`` raise. Raises ``InvalidKey`` if there is no identity or one
        is malformed."""
        keys = _parse_identities(self._identities)
        if not keys:
            raise InvalidKey("age decryption needs at least one identity")
        return _AgeDecoder(keys)
