"""The MongoDB stand-in as a fixture. No MongoDB server or tools can be installed here, so
``tests/standins/mongotool.py`` plays mongodump, mongorestore and mongosh (chosen by the
name it is called by): mongodump streams the bytes of ``source`` as an archive,
mongorestore writes what it is fed to ``sink``, mongosh reports whether ``sink`` holds
data (the "database" is not empty).

- ``tools`` (function): a ``Tools`` with ``.url``, ``.password``, ``.checksums()`` (of the
  data a dump reads), ``.restored()`` (of the data a restore wrote), ``.env()`` (the
  stand-in's variables) and ``.options()`` (the job options pointing at it).
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.lib.e2e import STANDINS

STANDIN = STANDINS / "mongotool.py"
PASSWORD = "s3cr3t pass/word:@%"  # needs URI escaping; must never reach argv
URL = "mongodb://backup@127.0.0.1:27999/app?authSource=admin"


@dataclass
class Tools:
    dir: Path
    mongodump: Path
    mongorestore: Path
    log: Path
    source: Path
    sink: Path

    url: str = URL
    password: str = PASSWORD

    def env(self, **extra: str) -> dict[str, str]:
        return {"STANDIN_LOG": str(self.log), "STANDIN_SOURCE": str(self.source),
                "STANDIN_SINK": str(self.sink), "STANDIN_EXPECT_PASSWORD": PASSWORD, **extra}

    def runs(self) -> list[dict[str, object]]:
        return [json.loads(line) for line in self.log.read_text().splitlines()]

    def options(self, *, mongosh: bool = False) -> dict[str, object]:
        """The job options; with ``mongosh`` the stand-in mongosh probes the server and
        checks that a restore target is empty."""
        opts: dict[str, object] = {
            "mongodump_path": str(self.mongodump), "mongorestore_path": str(self.mongorestore),
            "version_probe": "none", "temp_dir": str(self.dir / "tmp")}
        if mongosh:
            opts.update(mongosh_path=str(self.dir / "mongosh"), version_probe="mongosh")
        return opts

    def checksums(self) -> dict[str, str]:
        """The SHA-256 of the data a dump reads."""
        return {"app": hashlib.sha256(self.source.read_bytes()).hexdigest()}

    def restored(self) -> dict[str, str]:
        """The SHA-256 of the data restores wrote (empty: nothing restored yet)."""
        if not self.sink.exists():
            return {}
        return {"app": hashlib.sha256(self.sink.read_bytes()).hexdigest()}


@pytest.fixture
def tools(tmp_path: Path) -> Tools:
    d = tmp_path / "bin"
    d.mkdir()
    (d / "tmp").mkdir()
    for name in ("mongodump", "mongorestore", "mongosh"):
        (d / name).symlink_to(STANDIN)
    source = tmp_path / "source.bin"
    source.write_bytes(os.urandom(3 << 20) + PASSWORD.encode())
    return Tools(d, d / "mongodump", d / "mongorestore", tmp_path / "runs.jsonl", source,
                 tmp_path / "sink.bin")
