"""The catalog: object keys, manifests and backup selection. Pure functions.

A backup exists only once its manifest exists; the manifest is stored beside the data
object under the data key plus ``.manifest.json`` (``keys``), encoded and validated by
``manifest`` (``check`` validates every field), and chosen by ``select``. Storage I/O lives
in operations/.
"""

from __future__ import annotations

from dbcrate.catalog.keys import (
    MANIFEST_SUFFIX,
    SIG_SUFFIX,
    data_key,
    is_manifest,
    is_signature,
    key_name,
    manifest_key,
    new_id,
    sig_key,
    stamp,
)
from dbcrate.catalog.manifest import (
    FORMAT,
    FORMATS,
    decode,
    encode,
    encode_time,
    mac_input,
    parse_time,
    summary,
)
from dbcrate.catalog.select import ordered, select

__all__ = [
    "FORMAT",
    "FORMATS",
    "MANIFEST_SUFFIX",
    "SIG_SUFFIX",
    "data_key",
    "decode",
    "encode",
    "encode_time",
    "is_manifest",
    "is_signature",
    "key_name",
    "mac_input",
    "manifest_key",
    "new_id",
    "ordered",
    "parse_time",
    "select",
    "sig_key",
    "stamp",
    "summary",
]
