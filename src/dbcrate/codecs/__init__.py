"""Codecs: compression and encryption as Stages, one module per implementation
(the Protocol is in ``codecs.base``), and their registry.

Every codec has a registry ``name`` (recorded in manifests, in order) and a file
extension ``ext`` (used in object keys; empty for ``none``). Encryption codecs are
constructed with key material; ``encoder()`` needs what encrypts (recipients, key) and
``decoder()`` what decrypts (identities, key).
"""

from __future__ import annotations

from typing import Any

from dbcrate.codecs.base import Codec, CodecFactory


def _registry() -> dict[str, CodecFactory]:
    from dbcrate.codecs.aesgcm import AesGcmCodec
    from dbcrate.codecs.age import AgeCodec
    from dbcrate.codecs.gzip import GzipCodec
    from dbcrate.codecs.identity import IdentityCodec
    from dbcrate.codecs.zstd import ZstdCodec

    return {
        "none": IdentityCodec,
        "zstd": ZstdCodec,
        "gzip": GzipCodec,
        "age": AgeCodec,
        "aes-256-gcm": AesGcmCodec,
    }


#: Compression codec names accepted in config.
COMPRESSIONS = ("zstd", "gzip", "none")
#: Encryption codec names accepted in config.
ENCRYPTIONS = ("age", "aes-256-gcm", "none")


def make(name: str, **params: Any) -> Codec:
    """Build the codec registered under ``name`` with its parameters.

    Raises ``CorruptedData`` for an unknown name (a manifest we cannot have written).
    """
    from dbcrate.errors import CorruptedData

    registry = _registry()
    try:
        factory = registry[name]
    except KeyError:
        raise CorruptedData(
            f"unknown codec {name!r}",
            hint=f"known codecs: {', '.join(sorted(registry))}; upgrade dbcrate?",
        ) from None
    return factory(**params)


__all__ = ["COMPRESSIONS", "ENCRYPTIONS", "Codec", "CodecFactory", "make"]
