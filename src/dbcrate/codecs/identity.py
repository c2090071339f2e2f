"""The ``none`` codec: bytes pass through unchanged."""

from __future__ import annotations

from dbcrate.streams import Stage


class _PassThrough:
    """A Stage that returns its input unchanged. It never raises."""

    def feed(self, data: bytes) -> bytes:
        """Return ``data`` unchanged."""
        return data

    def flush(self) -> bytes:
        """Return ``b""``; there is never anything buffered."""
        return b""


class IdentityCodec:
    """No compression and no encryption (registry name ``none``, no file extension)."""

    name = "none"
    ext = ""

    def encoder(self) -> Stage:
        """A pass-through Stage. Raises nothing."""
        return _PassThrough()

    def decoder(self) -> Stage:
        """A pass-through Stage. Raises nothing."""
        return _PassThrough()
