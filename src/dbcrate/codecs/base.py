"""The codec Protocol: a reversible byte transformation as a pair of Stages."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from dbcrate.streams import Stage


class Codec(Protocol):
    """A reversible byte transformation."""

    name: str
    ext: str

    def encoder(self) -> Stage:
        """A fresh Stage that encodes one stream. Raises ``InvalidKey`` if key material
        needed for encoding is missing or malformed."""
        ...

    def decoder(self) -> Stage:
        """A fresh Stage that decodes one stream. Its ``feed``/``flush`` raise
        ``CorruptedData``, ``TruncatedData``, ``NoMatchingIdentity`` or ``WrongKey``."""
        ...


CodecFactory = Callable[..., Codec]
