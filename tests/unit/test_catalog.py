"""Catalog: keys, UUIDv7 ids, manifest round trip and selection (pure unit tests)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest

from dbcrate import catalog
from dbcrate.errors import BackupNotFound, ManifestError, UsageError
from dbcrate.model import Manifest
from tests.lib.manifests import manifest_at

T0 = datetime(2026, 11, 21, 3, 0, 0, tzinfo=UTC)


def manifest(i: int, job: str = "orders", status: str = "complete") -> Manifest:
    return manifest_at(T0 + timedelta(days=i), job, status)


def test_uuid7_is_time_ordered_and_valid() -> None:
    ids = [catalog.new_id(T0 + timedelta(milliseconds=i)) for i in range(50)]
    assert ids == sorted(ids)
    u = uuid.UUID(ids[0])
    assert u.version == 7 and u.variant == uuid.RFC_4122
    assert len({catalog.new_id(T0) for _ in range(100)}) == 100


def test_key_layout() -> None:
    key = catalog.data_key("orders", T0, "0190-x", ("pgdump", "zst", "", "age"))
    assert key == "orders/2026/11/21/20261121T030000Z-0190-x.pgdump.zst.age"
    assert catalog.manifest_key(key) == key + ".manifest.json"


def test_manifest_round_trip_and_no_surprises() -> None:
    m = manifest(0)
    body = catalog.encode(m)
    assert catalog.decode(body, where="k") == m
    assert b'"started_at": "2026-11-21T03:00:00Z"' in body


def test_manifest_errors() -> None:
    with pytest.raises(ManifestError, match="format 99"):
        catalog.decode(b'{"format": 99}', where="k")
    with pytest.raises(ManifestError, match="not valid"):
        catalog.decode(b"[1, 2", where="k")
    with pytest.raises(ManifestError, match="not valid"):
        catalog.decode(b'{"format": 1, "id": "x"}', where="k")


def test_select() -> None:
    ms = [manifest(i) for i in range(5)] + [manifest(9, job="other"), manifest(10, status="x")]
    assert catalog.select(ms, "orders", latest=True) == ms[4]
    assert catalog.select(ms, "orders", at=T0 + timedelta(days=2, hours=1)) == ms[2]
    assert catalog.select(ms, "orders", at=T0 + timedelta(days=2)) == ms[2]
    assert catalog.select(ms, "orders", backup_id=ms[1].id) == ms[1]
    with pytest.raises(BackupNotFound, match="oldest"):
        catalog.select(ms, "orders", at=T0 - timedelta(seconds=1))
    with pytest.raises(BackupNotFound):
        catalog.select(ms, "nobody", latest=True)
    with pytest.raises(BackupNotFound):
        catalog.select(ms, "orders", backup_id="ffffffff-0000")
    with pytest.raises(UsageError):
        catalog.select(ms, "orders", latest=True, backup_id="x")


# -- format 2: hmac and signatures (pure) ------------------------------------------------


def test_format_1_encoding_has_no_hmac_and_still_decodes() -> None:
    from dataclasses import replace

    old = replace(manifest(0), format=1)
    body = catalog.encode(old)
    assert b"hmac" not in body and b'"format": 1' in body
    assert catalog.decode(body, where="k") == old


def test_hmac_covers_every_field_but_itself() -> None:
    import json
    from dataclasses import replace

    from dbcrate import signing

    key = signing.mac_key(b"k" * 32)
    assert key != signing.mac_key(b"j" * 32) and len(key) == 32
    m = manifest(0)
    tag = signing.mac(key, catalog.mac_input(catalog.encode(m)))
    body = catalog.encode(replace(m, hmac=tag))
    assert signing.mac_ok(key, catalog.mac_input(body), tag)
    # whitespace and key order do not matter; any value does
    doc = json.loads(body)
    assert signing.mac_ok(key, catalog.mac_input(json.dumps(doc).encode()), tag)
    for field in ("id", "job", "started_at", "tool_version", "stages", "recipients"):
        edited = dict(doc)
        edited[field] = [] if isinstance(doc[field], list) else doc[field] + "0"
        assert not signing.mac_ok(key, catalog.mac_input(json.dumps(edited).encode()), tag)


def test_sshsig_sign_and_verify() -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from dbcrate import signing

    key = signing.SigningKey(Ed25519PrivateKey.generate())
    other = signing.SigningKey(Ed25519PrivateKey.generate())
    pub = signing.parse_public_line(key.public("host").line())
    assert pub.name == "host" and pub.raw == key.public().raw
    body = catalog.encode(manifest(0))
    sig = signing.sign(key, body)
    assert sig.startswith(b"-----BEGIN SSH SIGNATURE-----\n")
    assert signing.verify(sig, body, (pub,), where="k") == pub
    with pytest.raises(ManifestError, match="does not verify"):
        signing.verify(sig, body + b" ", (pub,), where="k")
    with pytest.raises(ManifestError, match="not trusted"):
        signing.verify(signing.sign(other, body), body, (pub,), where="k")
    for bad in (b"", b"garbage", sig[:-40] + b"\n-----END SSH SIGNATURE-----\n",
                sig.replace(b"SSH SIGNATURE", b"PGP SIGNATURE")):
        with pytest.raises(ManifestError, match="manifest k"):
            signing.verify(bad, body, (pub,), where="k")
    allowed = f"# comment\nops,backup {key.public().line()}\nother ssh-rsa AAAAB3Nza\n"
    [entry] = signing.parse_allowed_signers(allowed)
    assert entry.name == "ops,backup" and entry.raw == pub.raw


def test_stage_names_are_the_codec_registry_names() -> None:
    from dbcrate import codecs
    from dbcrate.catalog.check import STAGES

    assert set(STAGES) == set(codecs._registry())
