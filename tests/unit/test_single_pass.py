"""One read of a stored object: the decoders and the stored digest check share it, and a
damaged object is "corrupted"/"truncated" (exit 5) whichever layer notices first."""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterator

import pytest

from dbcrate.codecs import make
from dbcrate.codecs.age import fingerprint, generate_identity
from dbcrate.errors import DigestMismatch, NoMatchingIdentity, TruncatedData
from dbcrate.model import Digest
from dbcrate.operations.pipeline import decoded, primed
from dbcrate.streams import CHUNK, Stage, apply

IDENTITY, RECIPIENT = generate_identity()
OTHER, _ = generate_identity()
PLAIN = random.Random(15).randbytes(3 * CHUNK) + b"".join(
    b"%d\tcustomer %d\tpaid\n" % (i, i % 977) for i in range(100_000))


def _stored() -> bytes:
    stages = [make("zstd", level=1).encoder(), make("age", recipients=[RECIPIENT]).encoder()]
    return b"".join(apply(iter([PLAIN]), stages))


STORED = _stored()


def _digest(data: bytes) -> Digest:
    return Digest(size=len(data), sha256=hashlib.sha256(data).hexdigest())


class Counted:
    """The stored bytes in 1 MiB reads, counting what was fetched."""

    def __init__(self, data: bytes) -> None:
        self.data, self.fetched = data, 0

    def __iter__(self) -> Iterator[bytes]:
        for i in range(0, len(self.data), CHUNK):
            piece = self.data[i : i + CHUNK]
            self.fetched += len(piece)
            yield piece


def _decoders(identity: str = IDENTITY) -> list[Stage]:
    return [make("age", identities=[identity]).decoder(), make("zstd").decoder()]


def _run(stored: bytes, identity: str = IDENTITY, *, foreign: bool = False) -> tuple[bytes,
                                                                                      int]:
    source = Counted(stored)
    out = b"".join(primed(decoded(source, _digest(STORED), _decoders(identity), "t:k",
                                  foreign=lambda: foreign)))
    return out, source.fetched


def test_intact_object_is_read_once() -> None:
    assert len(STORED) > 2 * CHUNK
    out, fetched = _run(STORED)
    assert out == PLAIN and fetched == len(STORED)


@pytest.mark.parametrize("where", [40, len(STORED) // 2, len(STORED) - 1])
def test_flipped_byte_is_a_digest_mismatch_whichever_layer_notices(where: int) -> None:
    """40: inside the age header (it opens nothing: without the stored digest that would
    look like a wrong identity), middle: a chunk's tag, last byte: the final chunk."""
    bad = bytearray(STORED)
    bad[where] ^= 0x01
    with pytest.raises(DigestMismatch, match="does not match its manifest"):
        _run(bytes(bad))


def test_truncated_object_is_truncated() -> None:
    with pytest.raises(TruncatedData, match="truncated"):
        _run(STORED[:-1000])


def test_longer_object_is_refused() -> None:
    with pytest.raises(DigestMismatch, match="longer"):
        _run(STORED + b"x")


def test_wrong_identity_on_an_intact_object_is_a_key_error() -> None:
    with pytest.raises(NoMatchingIdentity):
        _run(STORED, OTHER)


def test_foreign_identity_is_told_without_reading_the_object() -> None:
    source = Counted(STORED)
    with pytest.raises(NoMatchingIdentity):
        primed(decoded(source, _digest(STORED), _decoders(OTHER), "t:k", foreign=lambda: True))
    assert source.fetched == CHUNK < len(STORED)
    assert fingerprint(RECIPIENT)  # the manifest's recipients are fingerprints like this
