"""MongoDB. No MongoDB server or tools can be installed here (no packages for this
platform), so the streaming, exit-code and failure handling run against a stand-in script
(tests/standins/mongotool.py) that behaves like mongodump/mongorestore; the real round trip
runs wherever ``mongod``, ``mongodump``, ``mongorestore`` and ``mongosh`` are present."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from dbcrate.engines import Connection, RestoreOptions
from dbcrate.engines.mongodb.engine import ARCHIVE_MAGIC, MongoEngine
from dbcrate.engines.mongodb.url import MongoTarget
from dbcrate.errors import DumpFailed, RestoreFailed
from dbcrate.sandbox import free_port
from tests.lib.e2e import Setup, local_target, make_setup
from tests.lib.procs import alive, files_under
from tests.servers.mongodb import PASSWORD, URL, Tools


def mongo_setup(tmp: Path, tools: Tools, url: str = URL, **kwargs: object) -> Setup:
    return make_setup(tmp / "cfg", url=url, password=PASSWORD, engine="mongodb",
                      targets=[local_target(tmp / "backups")], job_extra=tools.options(),
                      **kwargs)  # type: ignore[arg-type]


def test_round_trip_through_the_cli(tmp_path: Path, tools: Tools) -> None:
    setup = mongo_setup(tmp_path, tools)
    out = setup.run("backup", "orders", env=tools.env(), check=True)
    assert "orders: backup" in out.stdout
    [b] = setup.list_json("orders")
    assert b["engine"] == "mongodb" and ".mongoarchive.zst.age" in b["key"]
    manifest = json.loads(next((tmp_path / "backups").rglob("*.manifest.json")).read_text())
    assert manifest["tool"] == "mongodump" and manifest["tool_version"] == "100.9.4-standin"

    setup.run("restore", "orders", "--latest", "--identity", str(setup.identity),
              env=tools.env(), check=True)
    assert tools.sink.read_bytes() == tools.source.read_bytes()
    setup.run("restore", "orders", "--latest", "--clean", "--identity", str(setup.identity),
              env=tools.env(), check=True)

    runs = tools.runs()
    assert [r["tool"] for r in runs] == ["mongodump", "mongorestore", "mongorestore"]
    for r in runs:
        argv = " ".join(map(str, r["argv"]))  # type: ignore[call-overload]
        assert PASSWORD not in argv and "s3cr3t" not in argv
        assert "--uri=mongodb://backup@127.0.0.1:27999/app?authSource=admin" in argv
        assert r["password_ok"] is True and r["config_mode"] == 0o600
    assert "--drop" not in runs[1]["argv"]  # type: ignore[operator]
    assert "--drop" in runs[2]["argv"]  # type: ignore[operator]
    assert list((tools.dir / "tmp").iterdir()) == []  # private config dirs removed
    for f in (tmp_path / "backups").rglob("*.json"):
        assert "s3cr3t" not in f.read_text()


def test_dump_tool_failure_is_exit_3_with_stderr_tail(tmp_path: Path, tools: Tools) -> None:
    setup = mongo_setup(tmp_path, tools, compression="none")
    proc = setup.run("backup", env=tools.env(STANDIN_FAIL_AFTER=str(1 << 20)))
    assert proc.returncode == 3, proc.stderr
    assert "mongodump exited with status 1" in proc.stderr
    assert "error writing data for collection" in proc.stderr  # the tool's stderr tail
    assert files_under(tmp_path / "backups") == []
    assert setup.list_json("orders") == []
    assert list((tools.dir / "tmp").iterdir()) == []


def test_restore_tool_failure(tmp_path: Path, tools: Tools) -> None:
    setup = mongo_setup(tmp_path, tools)
    setup.run("backup", env=tools.env(), check=True)
    proc = setup.run("restore", "orders", "--latest", "--identity", str(setup.identity),
                     env=tools.env(STANDIN_FAIL_AFTER="65536"))
    assert proc.returncode == 7, proc.stderr
    assert "mongorestore exited with status 1" in proc.stderr
    assert "may hold part of the archive" in proc.stderr


def test_killed_tool_and_early_close(tmp_path: Path, tools: Tools) -> None:
    """SIGKILL mid-stream -> DumpFailed naming the signal; closing the iterator early
    kills the tool; the private config dir is gone either way."""
    pid_file = tmp_path / "pid"
    os.environ.update(tools.env(STANDIN_HANG_AFTER=str(1 << 20), STANDIN_PID_FILE=str(pid_file)))
    try:
        engine = MongoEngine(Connection(URL, PASSWORD, tools.options()))
        it = engine.dump()
        assert next(it).startswith(ARCHIVE_MAGIC)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        with pytest.raises(DumpFailed) as caught:
            for _ in it:
                pass
        assert "SIGKILL" in caught.value.message and caught.value.exit_code == 3

        gen = engine.dump()
        assert isinstance(gen, Generator)
        next(gen)
        pid = int(pid_file.read_text())
        gen.close()
        assert not alive(pid)
    finally:
        for k in tools.env(STANDIN_HANG_AFTER="", STANDIN_PID_FILE=""):
            os.environ.pop(k, None)
    assert list((tools.dir / "tmp").iterdir()) == []


def test_restore_source_error_propagates(tools: Tools) -> None:
    def broken() -> Iterator[bytes]:
        yield ARCHIVE_MAGIC + b"x" * 1000
        raise RestoreFailed("digest mismatch (test)")

    os.environ.update(tools.env())
    try:
        engine = MongoEngine(Connection(URL, PASSWORD, tools.options()))
        with pytest.raises(RestoreFailed, match="digest mismatch"):
            engine.restore(broken(), RestoreOptions())
    finally:
        for k in tools.env():
            os.environ.pop(k, None)


def test_uri_parsing_keeps_the_password_out() -> None:
    t = MongoTarget.parse("mongodb://u%40x:p%3Aw@h1:1,h2:2/db?replicaSet=rs")
    assert t.password == "p:w" and t.user == "u@x" and t.database == "db"
    assert t.uri() == "mongodb://u%40x@h1:1,h2:2/db?replicaSet=rs"
    assert "p%3Aw" in t.uri(with_password=True)
    assert MongoTarget.parse("mongodb://h", "pw").uri() == "mongodb://h"


# -- the real round trip ------------------------------------------------------------------

REAL = all(shutil.which(t) for t in ("mongod", "mongodump", "mongorestore", "mongosh"))


def _mongosh(port: int, script: str, password: str | None = None) -> str:
    env = dict(os.environ, URI=f"mongodb://127.0.0.1:{port}/admin" if password is None else
               f"mongodb://root:{password}@127.0.0.1:{port}/admin")
    proc = subprocess.run(["mongosh", "--nodb", "--quiet", "--norc", "--eval",
                           f"const m = new Mongo(process.env.URI); {script}"],
                          env=env, capture_output=True, text=True, check=True, timeout=60)
    return proc.stdout.strip()


@pytest.mark.skipif(not REAL, reason="mongod not installed (no MongoDB packages for this platform)")
def test_real_round_trip(tmp_path: Path) -> None:
    port, dbpath = free_port(), tmp_path / "db"
    dbpath.mkdir()
    mongod = subprocess.Popen(["mongod", "--port", str(port), "--bind_ip", "127.0.0.1",
                               "--dbpath", str(dbpath), "--auth", "--quiet"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                _mongosh(port, 'm.getDB("admin").runCommand({ping: 1})')
                break
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
        pw = "root-pw-" + os.urandom(6).hex()
        _mongosh(port, f'm.getDB("admin").createUser({{user: "root", pwd: "{pw}", '
                       'roles: ["root"]}})')
        _mongosh(port, 'const d = m.getDB("app"); d.orders.insertMany([...Array(500).keys()]'
                       '.map(i => ({_id: i, name: "order " + i, bin: BinData(0, "AAEC"), '
                       'at: new Date(1700000000000 + i)}))); d.items.insertOne({_id: "x", n: 1.5})',
                 pw)
        dump = 'print(EJSON.stringify(["orders", "items"].map(c => m.getDB("app")[c]' \
               '.find().sort({_id: 1}).toArray())))'
        expected = _mongosh(port, dump, pw)
        url = f"mongodb://root@127.0.0.1:{port}/app?authSource=admin"
        setup = make_setup(tmp_path / "cfg", url=url, password=pw, engine="mongodb",
                           targets=[local_target(tmp_path / "backups")])
        setup.run("backup", check=True)
        [b] = setup.list_json("orders")
        manifest = json.loads(next((tmp_path / "backups").rglob("*.manifest.json")).read_text())
        assert manifest["server_version"] != "unknown"

        refused = setup.run("restore", "orders", "--latest", "--identity", str(setup.identity))
        assert refused.returncode == 7 and "not empty" in refused.stderr
        _mongosh(port, 'm.getDB("app").dropDatabase()', pw)
        setup.run("restore", "orders", "--latest", "--identity", str(setup.identity), check=True)
        assert _mongosh(port, dump, pw) == expected
        assert b["engine"] == "mongodb"
    finally:
        mongod.terminate()
        mongod.wait(timeout=60)
