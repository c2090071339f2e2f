"""CPU seconds per GB of each stage of dbcrate's backup pipeline, replayed in this
process on a plain ``pg_dump -Fc -Z0`` file with dbcrate's own stage code:

  read      the dump read from a pipe (``engines.process.stream_stdout`` of ``cat``)
  hash      SHA-256 of the stored (compressed, encrypted) bytes, what a zstd job hashes
            (``streams.HashStage``; its plaintext is only counted, docs/format.md)
  hash_plaintext  SHA-256 of the plaintext: what ``plaintext_sha256 = true`` (and gzip
            or uncompressed jobs) add
  compress  zstd at the job's level (``codecs.zstd``)
  encrypt   age to one recipient (``codecs.age``)
  write     the local target's ``put`` (temp file, fsync, rename)

Each stage is a separate pass, timed with ``time.process_time`` (the whole process, its
threads included), less the cost of feeding it from a file. A pass over a file in memory
would hide the page cache; this reads it like the real pipeline does.
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from dbcrate import codecs
from dbcrate.engines.process import stream_stdout
from dbcrate.operations.pipeline import DEFAULT_LEVELS
from dbcrate.storage.local import LocalStorage
from dbcrate.streams import CHUNK, HashStage, Stage, apply

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def _file(path: Path) -> Iterator[bytes]:
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            yield chunk


def _cpu(chunks: Iterator[bytes], stages: list[Stage] | None = None) -> float:
    t0 = time.process_time()
    for _ in apply(chunks, stages or []):
        pass
    return time.process_time() - t0


def _to_file(chunks: Iterator[bytes], path: Path) -> None:
    with open(path, "wb") as f:
        for chunk in chunks:
            f.write(chunk)


def measure(dump: Path, recipient: str, level: int | None = None) -> dict[str, float]:
    """CPU seconds per GB (of plaintext) of each stage; see the module docstring."""
    gb = dump.stat().st_size / 1e9
    zstd = codecs.make("zstd", level=level or DEFAULT_LEVELS["zstd"])
    age = codecs.make("age", recipients=[recipient])
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="dbcrate-stages-") as tmp:
        work = Path(tmp)
        feed = min(_cpu(_file(dump)) for _ in range(2))
        out["read"] = _cpu(stream_stdout(["cat", str(dump)], ENV, "cat"))
        out["hash_plaintext"] = _cpu(_file(dump), [HashStage()]) - feed
        compressed = work / "z"
        out["compress"] = _cpu(_file(dump), [zstd.encoder()]) - feed
        _to_file(apply(_file(dump), [zstd.encoder()]), compressed)
        zfeed = min(_cpu(_file(compressed)) for _ in range(2))
        out["encrypt"] = _cpu(_file(compressed), [age.encoder()]) - zfeed
        encrypted = work / "a"
        _to_file(apply(_file(compressed), [age.encoder()]), encrypted)
        efeed = min(_cpu(_file(encrypted)) for _ in range(2))
        out["hash"] = _cpu(_file(encrypted), [HashStage()]) - efeed
        storage = LocalStorage(work / "target")
        t0 = time.process_time()
        storage.put("bench/object", _file(encrypted))
        out["write"] = time.process_time() - t0 - efeed
    return {k: max(0.0, v) / gb for k, v in out.items()}
