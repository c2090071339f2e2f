"""Redis through the real CLI and real redis-server processes: round trips by every
restore mode (copy, inplace, datadir), a truncated snapshot, the password only in the
tool's environment. (Killed tool, wrong password, unreachable server, non-empty target and
argv: tests/contract/test_engine.py.)"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from dbcrate.engines.redis.rdb import checked_rdb
from dbcrate.errors import DumpFailed
from tests.lib.e2e import STANDINS, Setup, local_target, make_setup, restore
from tests.lib.procs import files_under
from tests.servers.redis import REDIS_CLI, RedisServer, checksums, load_sample

Factory = Callable[..., RedisServer]


def redis_setup(tmp: Path, server: RedisServer, **kwargs: object) -> Setup:
    job_extra = dict(kwargs.pop("job_extra", {}) or {})  # type: ignore[call-overload]
    return make_setup(tmp / "cfg", url=server.url, password=server.password, engine="redis",
                      targets=[local_target(tmp / "backups")], job_extra=job_extra,
                      **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("encryption", ["age", "aes-256-gcm"])
def test_round_trip_copy_into_another_server(
    tmp_path: Path, redis_factory: Factory, encryption: str
) -> None:
    source, target = redis_factory(), redis_factory()
    load_sample(source)
    expected = checksums(source)
    assert {k[0] for k in expected} == {0, 3} and len(expected) >= 20
    setup = redis_setup(tmp_path, source, encryption=encryption)

    out = setup.run("backup", "orders", check=True)
    assert "orders: backup" in out.stdout
    [b] = setup.list_json("orders")
    assert b["engine"] == "redis" and ".rdb.zst." in b["key"]
    manifest = json.loads(next((tmp_path / "backups").rglob("*.manifest.json")).read_text())
    assert manifest["server_version"].startswith("7.") and manifest["tool"] == "redis-cli"

    restore(setup, "--to", target.url, password=target.password)
    assert checksums(target) == expected
    assert checksums(source) == expected  # the source was not touched


def test_round_trip_inplace_restarts_the_server(tmp_path: Path, redis_factory: Factory) -> None:
    server = redis_factory(save=True)  # it saves on shutdown: the restored file must win
    load_sample(server)
    expected = checksums(server)
    setup = redis_setup(tmp_path, server, compression="gzip", job_extra={
        "stop_command": server.stop_argv, "start_command": server.start_argv,
        "rdb_path": str(server.rdb), "start_timeout": 30,
    })
    setup.run("backup", check=True)
    with server.client() as c:
        c.call("FLUSHALL")
        c.call("SET", "after", "backup")
    old_pid = server.pidfile.read_text()

    refused = restore(setup, "--mode", "inplace", check=False)
    assert refused.returncode == 7 and "not empty" in refused.stderr, refused.stderr
    assert server.pidfile.read_text() == old_pid  # not restarted

    restore(setup, "--mode", "inplace", "--clean")
    assert server.pidfile.read_text() != old_pid  # really restarted
    assert checksums(server) == expected


def test_round_trip_datadir_then_start_a_server(tmp_path: Path, redis_factory: Factory) -> None:
    source = redis_factory()
    load_sample(source)
    expected = checksums(source)
    setup = redis_setup(tmp_path, source, encryption="none", compression="none")
    setup.run("backup", check=True)
    datadir = tmp_path / "datadir"
    datadir.mkdir()
    restore(setup, "--mode", "datadir", "--path", str(datadir))
    rdb = datadir / "dump.rdb"
    assert rdb.read_bytes()[:5] == b"REDIS" and rdb.read_bytes()[-9] == 0xFF
    assert [p.name for p in datadir.iterdir()] == ["dump.rdb"]  # no temp file left

    again = restore(setup, "--path", str(datadir), check=False)  # datadir is the default
    assert again.returncode == 7 and "exists" in again.stderr

    started = RedisServer(datadir)
    try:
        started.start()
        assert checksums(started) == expected
    finally:
        started.stop()


def test_truncated_snapshot_is_a_failed_dump(tmp_path: Path, redis_server: RedisServer) -> None:
    """A redis-cli that exits 0 after passing on part of the snapshot: exit 3, nothing kept."""
    load_sample(redis_server)
    setup = redis_setup(tmp_path, redis_server, job_extra={
        "redis_cli_path": str(STANDINS / "redis_cli_wrapper.py")})
    proc = setup.run("backup", env={"STANDIN_TRUNCATE": "50000", "STANDIN_REAL_TOOL": REDIS_CLI})
    assert proc.returncode == 3, proc.stderr
    assert "truncated" in proc.stderr
    assert files_under(tmp_path / "backups") == []
    assert setup.list_json("orders") == []


def test_password_only_in_environment(tmp_path: Path, redis_server: RedisServer) -> None:
    load_sample(redis_server)
    log = tmp_path / "argv.jsonl"
    setup = redis_setup(tmp_path, redis_server, job_extra={
        "redis_cli_path": str(STANDINS / "redis_cli_wrapper.py")})
    out = setup.run("backup", env={"STANDIN_ARGV_LOG": str(log), "STANDIN_REAL_TOOL": REDIS_CLI},
                    check=True)
    runs = [json.loads(line) for line in log.read_text().splitlines()]
    dump = [r for r in runs if "--rdb" in r["argv"]]
    assert dump and all(r["auth_env"] for r in dump)
    assert redis_server.password not in log.read_text()
    assert redis_server.password not in out.stdout + out.stderr
    for f in (tmp_path / "backups").rglob("*.json"):
        assert redis_server.password not in f.read_text()


def test_zero_sync_delay_option_restores_the_setting(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    with redis_server.client() as c:
        c.call("CONFIG", "SET", "repl-diskless-sync-delay", "7")
    setup = redis_setup(tmp_path, redis_server, job_extra={"zero_sync_delay": True})
    proc = setup.run("backup", check=True)
    assert proc.returncode == 0
    with redis_server.client() as c:
        assert c.config_get("repl-diskless-sync-delay") == "7"


# -- the RDB stream check (pure unit tests) ------------------------------------------------

RDB = b"REDIS0010" + b"\xfa\x01x" + b"\xff" + b"12345678"


@pytest.mark.parametrize("split", [1, 3, 7, 100])
def test_checked_rdb_strips_the_diskless_eof_mark(split: int) -> None:
    data = RDB + b"0123456789abcdef" * 2 + b"01234567"
    chunks = [data[i : i + split] for i in range(0, len(data), split)]
    assert b"".join(checked_rdb(chunks)) == RDB
    assert b"".join(checked_rdb([RDB])) == RDB


@pytest.mark.parametrize("data", [RDB[:-1], RDB[:-9], RDB[:5], b"", b"NOTRDB0010" + RDB[9:]])
def test_checked_rdb_rejects_incomplete_streams(data: bytes) -> None:
    with pytest.raises(DumpFailed):
        b"".join(checked_rdb([data]))
