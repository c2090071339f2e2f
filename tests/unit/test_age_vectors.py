"""The C2SP age test vectors (CCTV, npm package ``cctv-age`` 0.2.0) against our decoder.

The package is fetched with ``npm pack`` into ``$DBCRATE_CCTV_DIR`` (default
``~/.cache/dbcrate-test/cctv-age``) and its vectors extracted with ``node``. Every
vector with an X25519 identity must give exactly the expected outcome; vectors that
need only a passphrase (scrypt) or a post-quantum identity are skipped.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dbcrate.codecs.age import AgeCodec
from dbcrate.errors import CorruptedData, NoMatchingIdentity, TruncatedData

PACKAGE = "cctv-age@0.2.0"
TARBALL = "cctv-age-0.2.0.tgz"
EXPECTED_COUNT = 143

_EXTRACT = """
const dir = process.argv[1];
import(dir + "/package/index.js").then((v) => {
  const fs = require("fs");
  fs.mkdirSync(dir + "/vectors", { recursive: true });
  for (const [name, bytes] of Object.entries(v)) {
    fs.writeFileSync(dir + "/vectors/" + name, bytes);
  }
});
"""


def _vector_dir() -> tuple[Path | None, str]:
    """The directory of extracted vectors, fetching them if needed, or a skip reason."""
    base = Path(os.environ.get("DBCRATE_CCTV_DIR") or Path.home() / ".cache/dbcrate-test/cctv-age")
    vectors = base / "vectors"
    if vectors.is_dir() and len(list(vectors.iterdir())) >= EXPECTED_COUNT:
        return vectors, ""
    node, npm = shutil.which("node"), shutil.which("npm")
    if not node or not npm:
        return None, "node and npm are needed to fetch the cctv-age test vectors"
    base.mkdir(parents=True, exist_ok=True)
    if not (base / "package" / "index.js").exists():
        if not (base / TARBALL).exists():
            pack = subprocess.run(
                [npm, "pack", PACKAGE], cwd=base, capture_output=True, text=True, timeout=300
            )
            if pack.returncode != 0:
                return None, f"npm pack {PACKAGE} failed: {pack.stderr.strip()[-300:]}"
        with tarfile.open(base / TARBALL) as tar:
            tar.extractall(base, filter="data")
    done = subprocess.run(
        [node, "-e", _EXTRACT, str(base.resolve())], capture_output=True, text=True, timeout=120
    )
    if done.returncode != 0:
        return None, f"extracting the vectors with node failed: {done.stderr.strip()[-300:]}"
    return vectors, ""


@dataclass
class Vector:
    name: str
    expect: str
    payload: str | None
    identities: list[str] = field(default_factory=list)
    passphrases: list[str] = field(default_factory=list)
    armored: bool = False
    compressed: str | None = None
    body: bytes = b""


def _parse(path: Path) -> Vector:
    raw = path.read_bytes()
    head, body = raw.split(b"\n\n", 1)
    vec = Vector(path.name, "", None)
    for line in head.decode().splitlines():
        key, value = line.split(": ", 1)
        if key == "expect":
            vec.expect = value
        elif key == "payload":
            vec.payload = value
        elif key == "identity":
            vec.identities.append(value)
        elif key == "passphrase":
            vec.passphrases.append(value)
        elif key == "armored":
            vec.armored = value == "yes"
        elif key == "compressed":
            vec.compressed = value
    if vec.compressed == "zlib":
        body = zlib.decompress(body)
    elif vec.compressed is not None:
        raise AssertionError(f"{path.name}: unknown compression {vec.compressed}")
    vec.body = body
    return vec


VECTOR_DIR, SKIP_REASON = _vector_dir()
VECTORS = sorted(VECTOR_DIR.iterdir()) if VECTOR_DIR else []


def test_all_vectors_present() -> None:
    if VECTOR_DIR is None:
        pytest.skip(SKIP_REASON)
    assert len(VECTORS) == EXPECTED_COUNT


def _x25519(identities: list[str]) -> list[str]:
    return [i for i in identities if i.startswith("AGE-SECRET-KEY-1")]


def _feed_all(vec: Vector, sink: list[bytes]) -> None:
    stage = AgeCodec(identities=_x25519(vec.identities)).decoder()
    body = vec.body
    step = 4099  # irregular pieces, so the streaming paths are exercised
    for i in range(0, len(body), step):
        sink.append(stage.feed(body[i : i + step]))
    sink.append(stage.flush())


@pytest.mark.parametrize("path", VECTORS, ids=[p.name for p in VECTORS])
def test_vector(path: Path) -> None:
    vec = _parse(path)
    if not _x25519(vec.identities):
        pytest.skip("not an X25519 vector")
    out: list[bytes] = []
    if vec.expect == "success":
        _feed_all(vec, out)
        assert hashlib.sha256(b"".join(out)).hexdigest() == vec.payload
    elif vec.expect == "no match":
        with pytest.raises(NoMatchingIdentity):
            _feed_all(vec, out)
        assert not b"".join(out)
    elif vec.expect in ("header failure", "HMAC failure", "armor failure"):
        with pytest.raises(CorruptedData):
            _feed_all(vec, out)
        assert not b"".join(out), "no plaintext may be released before a header failure"
    elif vec.expect == "payload failure":
        with pytest.raises((CorruptedData, TruncatedData)):
            _feed_all(vec, out)
    else:
        raise AssertionError(f"unknown expectation {vec.expect!r}")
