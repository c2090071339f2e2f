"""Manifest format 3: a backup whose first stage is zstd records its plaintext's size but
no SHA-256 (``plaintext.sha256`` null; its zstd frames carry a content checksum), unless
``plaintext_sha256 = true``. Such a restore counts the plaintext and never hashes it;
formats 1 and 2 (and none/gzip backups) keep their plaintext SHA-256, checked as before."""

from __future__ import annotations

import hashlib
import json
import random
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from dbcrate import catalog, config, streams
from dbcrate.codecs import make
from dbcrate.codecs.age import fingerprint, generate_identity
from dbcrate.config import JobConfig, TargetConfig
from dbcrate.errors import ConfigError, CorruptedData, DigestMismatch, ManifestError, TruncatedData
from dbcrate.model import Digest, Manifest, PartRecord
from dbcrate.operations.pipeline import KeyMaterial, check_digest, encode_plan, verified
from dbcrate.operations.restore import Located, plaintext
from dbcrate.storage import open_target
from dbcrate.streams import CHUNK, apply
from tests.lib.config_cases import LOCAL, RECIPIENT

T0 = datetime(2026, 11, 21, 3, 0, 0, tzinfo=UTC)
IDENTITY, AGE_RECIPIENT = generate_identity()
PLAIN = random.Random(3).randbytes(2 * CHUNK) + b"".join(
    b"%d\tcustomer %d\tpaid\n" % (i, i % 977) for i in range(60_000))


def _sha(data: bytes) -> Digest:
    return Digest(len(data), hashlib.sha256(data).hexdigest())


def _manifest(stages: tuple[str, ...] = ("zstd", "age"), *, fmt: int = catalog.FORMAT,
              plain: Digest | None = None, stored: Digest | None = None) -> Manifest:
    bid = catalog.new_id(T0)
    exts = {"zstd": "zst", "gzip": "gz", "age": "age", "aes-256-gcm": "aes"}
    key = catalog.data_key("orders", T0, bid, ("pgdump", *(exts[s] for s in stages)))
    enc = stages[-1] if stages and stages[-1] in ("age", "aes-256-gcm") else "none"
    return Manifest(
        format=fmt, id=bid, job="orders", engine="postgres", server_version="17.11",
        tool="pg_dump", tool_version="17.11", stages=stages, started_at=T0,
        finished_at=T0 + timedelta(minutes=1),
        plaintext=plain if plain is not None else Digest(10, None),
        stored=stored if stored is not None else Digest(5, "b" * 64), encryption=enc,
        recipients=(fingerprint(AGE_RECIPIENT),) if enc == "age" else (),
        key_id="0123456789abcdef" if enc == "aes-256-gcm" else "", data_key=key,
    )


# -- the manifest --------------------------------------------------------------------------


def test_a_format_3_zstd_manifest_records_a_null_plaintext_sha256() -> None:
    assert catalog.FORMAT == 3 and catalog.FORMATS == (1, 2, 3)
    for stages in [("zstd",), ("zstd", "age"), ("zstd", "aes-256-gcm")]:
        m = _manifest(stages)
        body = catalog.encode(m)
        doc = json.loads(body)
        assert doc["format"] == 3 and doc["plaintext"] == {"size": 10, "sha256": None}
        assert catalog.decode(body, where="k") == m
        assert catalog.summary(m)["plaintext_sha256"] is None
        assert catalog.summary(m)["plaintext_size"] == 10 and catalog.summary(m)["format"] == 3
    # and it may still record one (plaintext_sha256 = true)
    m = _manifest(plain=Digest(10, "a" * 64))
    assert catalog.decode(catalog.encode(m), where="k").plaintext.sha256 == "a" * 64


@pytest.mark.parametrize("stages", [(), ("gzip",), ("age",), ("gzip", "age"),
                                    ("aes-256-gcm",)])
def test_a_null_plaintext_sha256_without_zstd_first_is_invalid(stages: tuple[str, ...]) -> None:
    body = catalog.encode(_manifest(stages))
    with pytest.raises(ManifestError, match="manifest k is not valid") as err:
        catalog.decode(body, where="k")
    assert "plaintext.sha256 is null, but the first stage is not zstd" in err.value.message
    assert err.value.exit_code == 5


@pytest.mark.parametrize("fmt", [1, 2])
def test_formats_1_and_2_still_require_the_plaintext_sha256(fmt: int) -> None:
    good = _manifest(fmt=fmt, plain=Digest(10, "a" * 64))
    assert catalog.decode(catalog.encode(good), where="k") == good
    with pytest.raises(ManifestError, match=r"plaintext\.sha256 must be 64 lowercase hex"):
        catalog.decode(catalog.encode(replace(good, plaintext=Digest(10, None))), where="k")


def test_only_the_plaintext_sha256_may_be_null() -> None:
    m = _manifest()
    part = PartRecord("globals", m.data_key.replace(".pgdump.", "-globals.sql.", 1),
                      Digest(3, None), Digest(4, "d" * 64))
    cases: list[tuple[str, dict[str, Any]]] = [
        ("stored.sha256", {"stored": {"size": 5, "sha256": None}}),
        ("parts[0].plaintext.sha256", {"parts": json.loads(
            catalog.encode(replace(m, parts=(part,))))["parts"]}),
    ]
    for field, edit in cases:
        doc = {**json.loads(catalog.encode(m)), **edit}
        with pytest.raises(ManifestError, match=re.escape(f"{field} must be 64 lowercase hex")):
            catalog.decode(json.dumps(doc).encode(), where="k")


def test_a_reader_of_formats_1_and_2_names_format_3() -> None:
    body = catalog.encode(_manifest())
    with pytest.raises(ManifestError) as err:
        catalog.decode(body.replace(b'"format": 3', b'"format": 4'), where="k")
    assert "has format 4, this dbcrate reads 1, 2, 3" in err.value.message
    assert "upgrade dbcrate" in err.value.hint


# -- the config key and the encode plan ------------------------------------------------------

JOB = '[[backup.jobs]]\ndatabase = "d"\nencrypt = false\n'


def _load(tmp_path: Path, text: str) -> config.Config:
    path = tmp_path / "dbcrate.toml"
    path.write_text(text)
    return config.load(path)


def test_plaintext_sha256_defaults_off_and_is_set_in_backup_or_per_job(tmp_path: Path) -> None:
    cfg = _load(tmp_path, LOCAL + JOB + 'name = "a"\n' + JOB + 'name = "b"\n'
                'plaintext_sha256 = true\n')
    assert not cfg.job("a").plaintext_sha256 and cfg.job("b").plaintext_sha256
    cfg = _load(tmp_path, "[backup]\nplaintext_sha256 = true\n" + LOCAL + JOB + 'name = "a"\n'
                + JOB + 'name = "b"\nplaintext_sha256 = false\n')
    assert cfg.job("a").plaintext_sha256 and not cfg.job("b").plaintext_sha256


@pytest.mark.parametrize(("text", "key"), [
    ('[backup]\nplaintext_sha256 = "yes"\n' + LOCAL + JOB, "backup.plaintext_sha256"),
    ("[backup]\nplaintext_sha256 = 1\n" + LOCAL, "backup.plaintext_sha256"),
    (LOCAL + JOB + 'plaintext_sha256 = "true"\n', "backup.jobs[0].plaintext_sha256"),
    (LOCAL + JOB + "plaintext_sha256 = 0\n", "backup.jobs[0].plaintext_sha256"),
])
def test_a_non_boolean_plaintext_sha256_is_refused(tmp_path: Path, text: str, key: str) -> None:
    path = tmp_path / "dbcrate.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        config.load(path)
    assert err.value.exit_code == 2 and str(path) in err.value.message
    assert f": {key}: " in err.value.message and "true or false" in err.value.message


def test_an_in_memory_job_with_a_non_boolean_plaintext_sha256_is_refused() -> None:
    with pytest.raises(ConfigError, match="plaintext_sha256"):
        JobConfig(name="j", engine="postgres", url="postgresql://h/d", targets=("t",),
                  plaintext_sha256="yes")  # type: ignore[arg-type]


def test_only_zstd_backups_skip_the_plaintext_sha256() -> None:
    def plan(**kw: Any) -> bool:
        job = JobConfig(name="j", engine="postgres", url="postgresql://h/d", targets=("t",),
                        **kw)
        return encode_plan(job).plaintext_sha256

    assert plan() is False and plan(encryption="age", recipients=(RECIPIENT,)) is False
    assert plan(encryption="aes-256-gcm", encryption_key=bytes(32)) is False
    assert plan(plaintext_sha256=True) is True
    assert plan(compression="gzip") is True and plan(compression="none") is True


# -- restore: the size is checked, nothing is hashed ------------------------------------------


class _Hashed:
    """Counts every byte fed to a SHA-256 made by ``dbcrate.streams``."""

    def __init__(self) -> None:
        self.made = self.fed = 0

    def sha256(self) -> Any:
        self.made += 1
        real, counter = hashlib.sha256(), self

        class _H:
            def update(self, data: bytes) -> None:
                counter.fed += len(data)
                real.update(data)

            def hexdigest(self) -> str:
                return real.hexdigest()

        return _H()


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> _Hashed:
    """Every SHA-256 that ``dbcrate.streams`` makes from here on is counted."""
    counting = _Hashed()
    monkeypatch.setattr(streams, "hashlib", SimpleNamespace(sha256=counting.sha256))
    return counting


def _stored_backup(tmp_path: Path, *, plain_sha: bool, damage: int | None = None,
                   stages: tuple[str, ...] = ("zstd", "age")) -> Located:
    codecs = [make("zstd", level=1) if s == "zstd" else make("age", recipients=[AGE_RECIPIENT])
              for s in stages]
    stored = bytearray(b"".join(apply(iter([PLAIN]), [c.encoder() for c in codecs])))
    if damage is not None:
        stored[damage] ^= 0x01
    plain = _sha(PLAIN) if plain_sha else Digest(len(PLAIN), None)
    m = _manifest(stages, plain=plain, stored=_sha(bytes(stored)))
    storage = open_target(TargetConfig("disk", "local", {"path": str(tmp_path)}))
    storage.put(m.data_key, [bytes(stored)])
    return Located(m, "disk", storage)


def test_a_null_plaintext_sha256_restores_without_hashing_the_plaintext(
    tmp_path: Path, hashed: _Hashed
) -> None:
    located = _stored_backup(tmp_path, plain_sha=False)
    out = b"".join(plaintext(located, KeyMaterial(identities=(IDENTITY,))))
    assert out == PLAIN
    # one SHA-256, of the stored object only: the plaintext was counted, never hashed
    assert hashed.made == 1 and hashed.fed == located.manifest.stored.size < len(PLAIN)


def test_a_recorded_plaintext_sha256_is_still_hashed(
    tmp_path: Path, hashed: _Hashed
) -> None:
    located = _stored_backup(tmp_path, plain_sha=True)
    assert b"".join(plaintext(located, KeyMaterial(identities=(IDENTITY,)))) == PLAIN
    assert hashed.made == 2 and hashed.fed == located.manifest.stored.size + len(PLAIN)
    # and a wrong one is a mismatch (exit 5) before end-of-stream
    wrong = replace(located.manifest, plaintext=Digest(len(PLAIN), "0" * 64))
    with pytest.raises(DigestMismatch, match=r"restored dump of \S+ does not match") as err:
        b"".join(plaintext(replace(located, manifest=wrong), KeyMaterial(identities=(IDENTITY,))))
    assert err.value.exit_code == 5


def test_a_null_plaintext_sha256_still_checks_the_size() -> None:
    size_only = Digest(len(PLAIN), None)
    assert b"".join(verified(iter([PLAIN]), size_only, "p")) == PLAIN
    with pytest.raises(TruncatedData, match="p is truncated"):
        b"".join(verified(iter([PLAIN[:-1]]), size_only, "p"))
    got: list[bytes] = []
    with pytest.raises(DigestMismatch, match="p is longer"):
        for chunk in verified(iter([PLAIN, b"x"]), size_only, "p"):
            got.append(chunk)
    assert got == [PLAIN]  # the extra chunk is never released
    with pytest.raises(DigestMismatch, match="3 bytes, expected 2 bytes"):
        check_digest(Digest(3, None), Digest(2, None), "p")
    check_digest(Digest(2, "a" * 64), Digest(2, None), "p")  # (a size is all there is)


def test_the_zstd_frame_checksum_catches_a_wrong_decoded_output(tmp_path: Path) -> None:
    """What stands in for the plaintext SHA-256: an unencrypted zstd object whose stored
    digest matches (the manifest is consistent with it) but whose frame's content
    checksum (the last 4 bytes, XXH64 of the plaintext) is off is corrupted, exit 5."""
    clean = _stored_backup(tmp_path / "a", plain_sha=False, stages=("zstd",))
    size = clean.manifest.stored.size
    located = _stored_backup(tmp_path / "b", plain_sha=False, stages=("zstd",),
                             damage=size - 1)
    with pytest.raises(CorruptedData, match="zstd data is corrupted") as err:
        b"".join(plaintext(located, KeyMaterial()))
    assert err.value.exit_code == 5


def test_every_zstd_frame_carries_its_content_size_and_checksum() -> None:
    """What a null plaintext SHA-256 relies on (docs/format.md): the encoder writes a
    frame per 1 MiB of plaintext (the last one shorter), whatever the input's chunking,
    and every frame carries the checksum flag and its content size; the frames decode,
    in order, to exactly the input."""
    import zstandard

    from dbcrate.codecs.zstd import FRAME

    plain = (PLAIN * (2 * FRAME // len(PLAIN) + 2))[:2 * FRAME + 12345]  # 2 frames and a part
    pieces = [plain[:7], plain[7:FRAME + 5], plain[FRAME + 5:]]
    stored = b"".join(apply(iter(pieces), [make("zstd", level=1).encoder()]))
    sizes = []
    rest = stored
    while rest:
        params = zstandard.get_frame_parameters(rest)
        assert params.has_checksum
        dec = zstandard.ZstdDecompressor().decompressobj()
        sizes.append(len(dec.decompress(rest)))
        assert dec.eof and params.content_size == sizes[-1]
        rest = dec.unused_data
    assert sizes == [FRAME, FRAME, 12345]
    assert zstandard.ZstdDecompressor().decompressobj().decompress(stored)  # a stream
    assert b"".join(apply(iter([stored]), [make("zstd").decoder()])) == plain


def test_an_empty_input_is_one_empty_zstd_frame() -> None:
    """No plaintext at all still makes a zstd stream (one empty frame with a checksum),
    which decodes to nothing; the decoder refuses an object with no frame."""
    import zstandard

    stored = b"".join(apply(iter([]), [make("zstd", level=1).encoder()]))
    assert zstandard.get_frame_parameters(stored).has_checksum
    assert b"".join(apply(iter([stored]), [make("zstd").decoder()])) == b""
