"""Which codecs a job encodes with, and how a manifest's stages are decoded."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field

from dbcrate import codecs
from dbcrate.codecs.age import fingerprint, recipient_of
from dbcrate.codecs.base import Codec
from dbcrate.config import JobConfig
from dbcrate.errors import (
    DbcrateError,
    DecryptionError,
    DigestMismatch,
    TruncatedData,
    UsageError,
)
from dbcrate.model import Digest, Manifest
from dbcrate.streams import HashStage, SizeStage, Stage, apply, close_iter

#: Default compression levels; zstd level 1 measured within a few % of level 3 at half the
#: CPU on pg_dump output (see bench/backup.py).
DEFAULT_LEVELS = {"zstd": 1, "gzip": 6}


@dataclass(frozen=True)
class KeyMaterial:
    """What decrypts: age identities and/or the symmetric key. Lives only in memory."""

    identities: tuple[str, ...] = field(default=(), repr=False)
    aes_key: bytes | None = field(default=None, repr=False)


@dataclass(frozen=True)
class EncodePlan:
    """The codecs of one backup, in order, with what the manifest records about them.
    ``plaintext_sha256``: whether the main dump's plaintext is hashed (always, unless the
    first codec is zstd, whose frames carry a content checksum, and the job does not set
    ``plaintext_sha256 = true``); parts are always hashed."""

    codecs: tuple[codecs.Codec, ...]
    encryption: str
    recipients: tuple[str, ...]
    key_id: str
    plaintext_sha256: bool = True

    @property
    def stages(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.codecs)

    @property
    def exts(self) -> tuple[str, ...]:
        return tuple(c.ext for c in self.codecs)

    @property
    def compressors(self) -> tuple[Codec, ...]:
        """The leading compression codecs (run beside the hash, on plaintext)."""
        return tuple(c for c in self.codecs if c.name in DEFAULT_LEVELS)

    @property
    def sealers(self) -> tuple[Codec, ...]:
        """The codecs after compression (encryption)."""
        return tuple(c for c in self.codecs if c.name not in DEFAULT_LEVELS)


def encode_plan(job: JobConfig) -> EncodePlan:
    """The codecs ``job`` encodes with. Only ``encryption = "none"`` means no encryption:
    an unknown mode, or a mode without its key material, raises ``ConfigError`` (never
    falls through to plaintext); a malformed recipient or key raises ``InvalidKey``."""
    chain: list[codecs.Codec] = []
    if job.compression not in DEFAULT_LEVELS and job.compression != "none":
        raise job.error("compression", f"unknown compression {job.compression!r}")
    if job.compression != "none":
        level = job.compression_level
        chain.append(codecs.make(job.compression, level=level or DEFAULT_LEVELS[job.compression]))
    recipients: tuple[str, ...] = ()
    key_id = ""
    if job.encryption == "age":
        if not job.recipients:
            raise job.error("recipients", 'encryption = "age" needs at least one recipient')
        chain.append(codecs.make("age", recipients=job.recipients))
        recipients = tuple(fingerprint(r) for r in job.recipients)
    elif job.encryption == "aes-256-gcm":
        if job.encryption_key is None:
            raise job.error("encryption_key", 'encryption = "aes-256-gcm" needs encryption_key')
        chain.append(codecs.make("aes-256-gcm", key=job.encryption_key))
        key_id = key_fingerprint(job.encryption_key)
    elif job.encryption != "none":
        raise job.error("encryption", f"unknown encryption {job.encryption!r}")
    hashed = job.plaintext_sha256 or job.compression != "zstd"
    return EncodePlan(tuple(chain), job.encryption, recipients, key_id, hashed)


def key_fingerprint(key: bytes) -> str:
    """A short public name for a symmetric key (HMAC of a fixed label; reveals nothing)."""
    import hashlib
    import hmac

    return hmac.new(key, b"dbcrate key id v1", hashlib.sha256).hexdigest()[:16]


def decoders(manifest: Manifest, keys: KeyMaterial) -> list[Stage]:
    """Decoding stages for ``manifest``, last codec first.

    Raises ``UsageError`` when the key material the backup needs was not given.
    """
    stages: list[Stage] = []
    for name in reversed(manifest.stages):
        if name == "age":
            if not keys.identities:
                raise UsageError(
                    f"backup {manifest.id} is encrypted with age",
                    hint="pass the identity file: --identity FILE (or $DBCRATE_IDENTITY_FILE)",
                )
            stages.append(codecs.make("age", identities=keys.identities).decoder())
        elif name == "aes-256-gcm":
            if keys.aes_key is None:
                raise UsageError(
                    f"backup {manifest.id} is encrypted with aes-256-gcm",
                    hint="set encryption_key or encryption_key_file in the config",
                )
            stages.append(codecs.make("aes-256-gcm", key=keys.aes_key).decoder())
        else:
            stages.append(codecs.make(name).decoder())
    return stages


def foreign(manifest: Manifest, keys: KeyMaterial) -> bool:
    """True when ``keys`` provably are not what ``manifest`` was encrypted to: none of
    the age identities is one of its recipients, or the symmetric key's id is not its
    ``key_id``. False when it cannot tell (an old manifest without them)."""
    if "age" in manifest.stages and manifest.recipients and keys.identities:
        try:
            mine = {fingerprint(recipient_of(i)) for i in keys.identities}
        except DbcrateError:
            return False
        return not mine & set(manifest.recipients)
    if "aes-256-gcm" in manifest.stages and manifest.key_id and keys.aes_key is not None:
        return key_fingerprint(keys.aes_key) != manifest.key_id
    return False


def check_digest(actual: Digest, expected: Digest, what: str) -> None:
    """Raise ``TruncatedData`` (shorter), ``DigestMismatch`` (other) unless equal. When
    ``expected.sha256`` is None (the manifest records only a size) only the sizes are
    compared."""
    if actual.size < expected.size:
        raise TruncatedData(
            f"{what} is truncated: {actual.size} bytes, the manifest says {expected.size}"
        )
    if expected.sha256 is None:
        if actual.size != expected.size:
            raise DigestMismatch(f"{what} does not match its manifest: {actual.size} bytes, "
                                 f"expected {expected.size} bytes")
        return
    if actual != expected:
        raise DigestMismatch(
            f"{what} does not match its manifest: sha256 {_short(actual.sha256)} "
            f"({actual.size} bytes), expected {_short(expected.sha256)} ({expected.size} bytes)"
        )


def _short(sha: str | None) -> str:
    return "(not computed)" if sha is None else f"{sha[:16]}..."


def verified(chunks: Iterable[bytes], expected: Digest, what: str) -> Iterator[bytes]:
    """Pass ``chunks`` through; after the last one raise unless their digest is ``expected``
    (``check_digest``: ``TruncatedData``, ``DigestMismatch``; a stream longer than
    ``expected.size`` raises ``DigestMismatch`` as soon as it is). When
    ``expected.sha256`` is None the bytes are only counted, never hashed.

    The check runs before the consumer sees end-of-stream, so a restore tool reading the
    stream is killed (and rolls back) instead of committing.
    """
    h = HashStage() if expected.sha256 is not None else SizeStage()
    for chunk in chunks:
        h.feed(chunk)
        if h.size > expected.size:
            raise DigestMismatch(f"{what} is longer than its manifest says ({expected.size} bytes)")
        yield chunk
    check_digest(h.digest(), expected, what)


def decoded(
    stored: Iterable[bytes],
    expected: Digest,
    stages: Sequence[Stage],
    what: str,
    *,
    foreign: Callable[[], bool] = lambda: False,
) -> Iterator[bytes]:
    """Decode the stored object ``stored`` through ``stages`` in one pass, hashing the
    stored bytes as they go by: after its last byte (before the stages are flushed, so
    before the consumer sees end-of-stream) their size and SHA-256 must be ``expected``.

    One error per cause, whichever layer notices first: if a stage fails (an AEAD tag,
    a zstd frame, an age header), the rest of the stored object is read and hashed; a
    stored object that differs from its manifest raises ``TruncatedData`` (shorter) or
    ``DigestMismatch`` (other, exit 5), and only an intact one lets the stage's own error
    through (``WrongKey``/``NoMatchingIdentity`` exit 6, ``CorruptedData`` exit 5).
    ``foreign()`` true (the key material is not the manifest's) skips that read for a
    ``DecryptionError``. Storage errors propagate unchanged. Closing the result closes
    ``stored``.
    """
    source = iter(stored)
    h = HashStage()
    ended = own = False
    label = f"stored object {what}"

    def hashed() -> Iterator[bytes]:
        nonlocal ended, own
        try:
            for chunk in source:
                h.feed(chunk)
                if h.size > expected.size:
                    raise DigestMismatch(f"{label} is longer than its manifest says "
                                         f"({expected.size} bytes)")
                yield chunk
            ended = True
            check_digest(h.digest(), expected, label)
        except DbcrateError:  # the storage's or the digest's own (not GeneratorExit)
            own = True
            raise

    try:
        yield from apply(hashed(), stages)
    except DbcrateError as exc:
        if own or ended or (isinstance(exc, DecryptionError) and foreign()):
            raise
        for chunk in source:  # which layer is it: the stored bytes or the key?
            h.feed(chunk)
            if h.size > expected.size:
                break
        check_digest(h.digest(), expected, label)
        raise
    finally:
        close_iter(source)


def primed(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """``chunks`` with its first chunk already produced: errors that show at the start
    (a missing object, a wrong key) raise here, before a consumer is started. Closing
    the result closes ``chunks``."""
    it = iter(chunks)
    try:
        first = next(it)
    except StopIteration:
        return iter(())
    except BaseException:
        close_iter(it)
        raise
    return _prepend(first, it)


def _prepend(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    try:
        yield first
        yield from rest
    finally:
        close_iter(rest)
