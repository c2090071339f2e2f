"""Manifest encoding and decoding (formats 1, 2 and 3), validated field by field
(``catalog.check``), and the fields ``--json`` shows (``summary``). Pure functions."""

from __future__ import annotations

import json
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from dbcrate.catalog import check
from dbcrate.catalog.check import Bad as _Bad
from dbcrate.errors import ManifestError
from dbcrate.model import Manifest

#: the format new manifests are written in; FORMATS are those this dbcrate reads.
#: 2 added ``hmac``; 3 lets ``plaintext.sha256`` be null when the first stage is zstd
FORMAT = 3
FORMATS = (1, 2, 3)


def encode_time(value: datetime) -> str:
    """``2026-11-21T03:00:00.123456Z``."""
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def encode(manifest: Manifest) -> bytes:
    """The manifest as canonical, pretty JSON (UTF-8)."""
    doc: dict[str, Any] = asdict(manifest)
    doc["started_at"] = encode_time(manifest.started_at)
    doc["finished_at"] = encode_time(manifest.finished_at)
    doc["stages"] = list(manifest.stages)
    doc["recipients"] = list(manifest.recipients)
    doc["parts"] = [asdict(p) for p in manifest.parts]
    if manifest.format == 1:
        doc.pop("hmac")  # format 1 had no hmac member
    if manifest.kind == "dump":
        doc.pop("kind")  # dumps are written as before base backups existed
    return (json.dumps(doc, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()


def parse_time(text: str) -> datetime:
    """An ISO 8601 time; naive times are taken as UTC. Raises ``ValueError``."""
    value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def mac_input(data: bytes) -> bytes:
    """What a format-2 (or later) manifest's ``hmac`` covers: the manifest's JSON object without
    its ``hmac`` member, re-serialised with sorted keys, no whitespace, UTF-8.

    Raises ``ManifestError`` if ``data`` is not a JSON object.
    """
    try:
        doc = json.loads(data)
    except ValueError:
        doc = None
    if not isinstance(doc, dict):
        raise ManifestError("manifest is not a JSON object")
    doc.pop("hmac", None)
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def decode(data: bytes, *, where: str) -> Manifest:
    """Parse and validate a manifest: every field's type and value, and that its
    ``stages``, ``encryption``, ``recipients`` and ``key_id`` agree.

    Raises ``ManifestError`` naming ``where`` if it is not a manifest this dbcrate wrote
    (never another exception, whatever the JSON holds). Authenticity is checked by the
    caller (operations), not here.
    """
    try:
        try:
            doc = json.loads(data)
        except (ValueError, RecursionError) as exc:
            raise _Bad(f"not JSON ({type(exc).__name__})") from None
        if not isinstance(doc, dict):
            raise _Bad("not a JSON object")
        fmt = doc.get("format")
        if isinstance(fmt, bool) or fmt not in FORMATS:
            raise ManifestError(
                f"manifest {where} has format {fmt!r}, this dbcrate reads "
                f"{', '.join(map(str, FORMATS))}",
                hint="upgrade dbcrate to read it",
            )
        return check.manifest(doc, fmt)
    except _Bad as exc:
        raise ManifestError(
            f"manifest {where} is not valid ({exc})",
            hint="it may have been edited or damaged; other backups are unaffected",
        ) from None


def summary(m: Manifest) -> dict[str, Any]:
    """The fields ``list --json`` and ``backup --json`` show for a backup (a contract:
    scripts read them; add freely, never rename)."""
    return {
        "id": m.id, "job": m.job, "engine": m.engine, "key": m.data_key,
        "started_at": encode_time(m.started_at),
        "finished_at": encode_time(m.finished_at),
        "size": m.stored.size, "sha256": m.stored.sha256,
        "plaintext_size": m.plaintext.size, "plaintext_sha256": m.plaintext.sha256,
        "stages": list(m.stages), "encryption": m.encryption,
        "encrypted": m.encryption != "none", "recipients": list(m.recipients),
        "server_version": m.server_version, "tool": m.tool, "tool_version": m.tool_version,
        "status": m.status, "format": m.format,
        "kind": m.kind, "timeline": _int(m.extra.get("timeline")),
        "start_lsn": m.extra.get("start_lsn"), "stop_lsn": m.extra.get("stop_lsn"),
    }


def _int(text: str | None) -> int | None:
    return int(text) if text is not None and text.isdigit() else None
