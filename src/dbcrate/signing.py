"""Manifest authentication: OpenSSH SSHSIG signatures (Ed25519) and the aes-job HMAC.

Pure crypto over bytes (no I/O but reading a key file), at the bottom layer with
model/errors. The formats are in docs/format.md:

- SSHSIG (OpenSSH PROTOCOL.sshsig), namespace ``dbcrate-manifest``, hash ``sha512``,
  armored ``-----BEGIN SSH SIGNATURE-----``, so ``ssh-keygen -Y verify`` checks it;
- HMAC-SHA256 under HKDF-SHA256(job key, salt = none, info = "dbcrate manifest hmac v1").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from dbcrate.errors import ConfigError, InvalidKey, ManifestError

NAMESPACE = "dbcrate-manifest"
HASH = "sha512"
MAGIC = b"SSHSIG"
VERSION = 1
KEY_TYPE = "ssh-ed25519"
BEGIN = "-----BEGIN SSH SIGNATURE-----"
END = "-----END SSH SIGNATURE-----"
HMAC_INFO = b"dbcrate manifest hmac v1"
#: a signature object is a few hundred bytes; anything larger is not one
MAX_SIG_SIZE = 8192


def _string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        if n > len(self.data) - self.pos:
            raise ValueError("truncated")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def string(self) -> bytes:
        (n,) = struct.unpack(">I", self.take(4))
        return self.take(n)

    def end(self) -> None:
        if self.pos != len(self.data):
            raise ValueError("trailing bytes")


@dataclass(frozen=True)
class PublicKey:
    """An Ed25519 public key with the name it is trusted under."""

    raw: bytes
    name: str = ""

    @property
    def blob(self) -> bytes:
        """The SSH wire encoding (``string "ssh-ed25519" || string key``)."""
        return _string(KEY_TYPE.encode()) + _string(self.raw)

    def line(self) -> str:
        """``ssh-ed25519 AAAA... name``."""
        text = f"{KEY_TYPE} {base64.b64encode(self.blob).decode()}"
        return f"{text} {self.name}" if self.name else text

    def fingerprint(self) -> str:
        """``SHA256:...`` as ssh-keygen prints it."""
        digest = base64.b64encode(hashlib.sha256(self.blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"


@dataclass(frozen=True)
class SigningKey:
    """An Ed25519 private key (lives only in memory)."""

    key: Ed25519PrivateKey = field(repr=False)

    def public(self, name: str = "") -> PublicKey:
        raw = self.key.public_key().public_bytes(
            serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return PublicKey(raw, name)


def generate() -> tuple[bytes, PublicKey]:
    """A new key: its OpenSSH private key file contents and its public key."""
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    return pem, SigningKey(key).public(NAMESPACE)


def load_signing_key(path: str, *, file: str, key: str) -> SigningKey:
    """Read an unencrypted OpenSSH Ed25519 private key file.

    Raises ``ConfigError`` naming ``file``/``key`` (never the key material).
    """
    try:
        data = Path(path).expanduser().read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read signing key {path}: {exc.strerror or exc}",
                          file=file, key=key) from None
    try:
        loaded = serialization.load_ssh_private_key(data, password=None)
    except (ValueError, TypeError, binascii.Error):
        raise ConfigError(f"{path} is not an unencrypted OpenSSH private key",
                          hint="create one with `dbcrate keygen --signing -o FILE`",
                          file=file, key=key) from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 key", hint="only ssh-ed25519 signs "
                          "manifests; create one with `dbcrate keygen --signing -o FILE`",
                          file=file, key=key)
    return SigningKey(loaded)


def parse_public_line(line: str, name: str = "") -> PublicKey:
    """``ssh-ed25519 AAAA... [comment]`` -> ``PublicKey`` (named ``name`` or the comment).

    Raises ``InvalidKey`` without echoing the key.
    """
    fields = line.split()
    if len(fields) < 2 or fields[0] != KEY_TYPE:
        raise InvalidKey("a trusted signer must be an `ssh-ed25519 AAAA... name` line",
                         hint="print one with `dbcrate keygen --signing -o FILE`")
    try:
        r = _Reader(base64.b64decode(fields[1], validate=True))
        kind, raw = r.string(), r.string()
        r.end()
    except (ValueError, binascii.Error, struct.error):
        raise InvalidKey("a trusted signer's ssh-ed25519 key is not valid base64 key data",
                         hint="copy the whole line `dbcrate keygen --signing` printed") from None
    if kind != KEY_TYPE.encode() or len(raw) != 32:
        raise InvalidKey("a trusted signer's key is not a 32-byte ssh-ed25519 key")
    return PublicKey(raw, name or " ".join(fields[2:]))


def parse_allowed_signers(text: str) -> list[PublicKey]:
    """OpenSSH allowed_signers lines (``principals [options] keytype base64 [comment]``)
    -> their ssh-ed25519 keys, named by principal; other key types are skipped.

    Raises ``InvalidKey`` for a malformed ssh-ed25519 entry.
    """
    keys: list[PublicKey] = []
    for raw_line in text.splitlines():
        line = raw_line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split()
        if KEY_TYPE not in fields[1:]:
            continue
        at = fields.index(KEY_TYPE, 1)
        keys.append(parse_public_line(" ".join(fields[at:at + 2]), name=fields[0]))
    return keys


def _signed_data(message: bytes) -> bytes:
    digest = hashlib.sha512(message).digest()
    return (MAGIC + _string(NAMESPACE.encode()) + _string(b"") + _string(HASH.encode())
            + _string(digest))


def sign(key: SigningKey, message: bytes) -> bytes:
    """The armored SSHSIG signature of ``message`` (what ``ssh-keygen -Y sign`` writes)."""
    sig = key.key.sign(_signed_data(message))
    blob = (MAGIC + struct.pack(">I", VERSION) + _string(key.public().blob)
            + _string(NAMESPACE.encode()) + _string(b"") + _string(HASH.encode())
            + _string(_string(KEY_TYPE.encode()) + _string(sig)))
    b64 = base64.b64encode(blob).decode()
    lines = [b64[i:i + 70] for i in range(0, len(b64), 70)]
    return ("\n".join([BEGIN, *lines, END]) + "\n").encode()


def verify(signature: bytes, message: bytes, trusted: tuple[PublicKey, ...],
           *, where: str) -> PublicKey:
    """The trusted key that signed ``message`` with ``signature`` (armored SSHSIG).

    Raises ``ManifestError`` naming ``where`` when the signature is malformed, is for
    another namespace or hash, is by a key not in ``trusted``, or does not verify.
    """
    try:
        text = signature.decode("ascii")
        lines = [ln.strip() for ln in text.strip().splitlines()]
        if len(signature) > MAX_SIG_SIZE or lines[0] != BEGIN or lines[-1] != END:
            raise ValueError("not an armored SSH signature")
        r = _Reader(base64.b64decode("".join(lines[1:-1]), validate=True))
        if r.take(6) != MAGIC or struct.unpack(">I", r.take(4))[0] != VERSION:
            raise ValueError("not an SSHSIG version 1 signature")
        pub, namespace, _reserved, hash_alg, sig_blob = (r.string() for _ in range(5))
        r.end()
        s = _Reader(sig_blob)
        kind, raw_sig = s.string(), s.string()
        s.end()
    except (ValueError, UnicodeDecodeError, binascii.Error, struct.error, IndexError) as exc:
        raise ManifestError(f"signature of manifest {where} is malformed ({exc})") from None
    if namespace != NAMESPACE.encode() or hash_alg != HASH.encode():
        raise ManifestError(f"signature of manifest {where} is not a {NAMESPACE} {HASH} "
                            "signature")
    signer = next((k for k in trusted if hmac.compare_digest(k.blob, pub)), None)
    if signer is None:
        raise ManifestError(
            f"manifest {where} is signed by a key that is not trusted",
            hint="add the backing-up host's `ssh-ed25519 ...` line to trusted_signers")
    if kind != KEY_TYPE.encode():
        raise ManifestError(f"signature of manifest {where} is not an ssh-ed25519 signature")
    try:
        Ed25519PublicKey.from_public_bytes(signer.raw).verify(raw_sig, _signed_data(message))
    except InvalidSignature:
        raise ManifestError(f"signature of manifest {where} does not verify: the manifest "
                            "was changed after it was signed") from None
    return signer


def mac_key(job_key: bytes) -> bytes:
    """The manifest HMAC key of an aes-256-gcm job key (HKDF-SHA256, own label)."""
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=HMAC_INFO).derive(job_key)


def mac(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 of ``data`` under ``key`` (a ``mac_key``), hex."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def mac_ok(key: bytes, data: bytes, tag: str) -> bool:
    """Constant-time check of a hex tag."""
    return hmac.compare_digest(mac(key, data), tag)


def write_private(path: str, data: bytes) -> None:
    """Create ``path`` 0600 (never overwriting) with ``data``. Raises ``OSError``."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
