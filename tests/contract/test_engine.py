"""The Engine contract: every engine (tests/contract/engines.py: postgres, mariadb, redis
on real servers, mongodb on the stand-in tools) through the real CLI and the real
pipeline:

- a round trip restores data with checksums equal to the source's;
- a dump tool killed mid-stream leaves no object, no upload and no manifest;
- database faults exit 8 without the password in the output;
- a non-empty target is refused (exit 7, unchanged) without ``--clean``, replaced with it;
- the password never appears in any process's argv, in any output, in the backups or in
  files written to /tmp, and no private file for a tool outlives the run.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import pytest

from dbcrate import config as config_mod
from dbcrate.errors import DumpFailed
from dbcrate.operations.backup import run_backup
from tests.contract.engines import ENGINE_HARNESSES, WRONG, EngineHarness
from tests.lib.e2e import Setup, local_target, make_setup, restore
from tests.lib.procs import (
    ArgvWatcher,
    KillOnFirstBytes,
    files_containing,
    files_under,
    private_dirs,
)
from tests.servers.s3 import S3Server, s3_state

HARNESSES = [pytest.param(h, id=h.name) for h in ENGINE_HARNESSES]
FAULTS = [pytest.param(h, f, id=f"{h.name}-{f}") for h in ENGINE_HARNESSES for f in h.faults]


def setup_for(h: EngineHarness, tmp: Path, db: Any, *, check: bool = False,
              **kwargs: Any) -> Setup:
    """A config backing ``db`` up to ``tmp/backups`` (``check``: the engine can check that
    a restore target is empty)."""
    kwargs.setdefault("url", db.url)
    kwargs.setdefault("password", db.password)
    kwargs.setdefault("targets", [local_target(tmp / "backups")])
    return make_setup(tmp / "cfg", engine=h.engine, job_extra=h.job_extra(db, check), **kwargs)


@pytest.mark.parametrize("h", HARNESSES)
def test_round_trip_restores_equal_checksums(
    h: EngineHarness, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = h.source(request)
    expected = db.checksums()
    assert expected
    setup = setup_for(h, tmp_path, db)
    setup.run("backup", "orders", env=h.env(db), check=True)
    [b] = setup.list_json("orders")
    assert b["engine"] == h.engine

    place = h.fresh(request, db)
    restore(setup, to=place.to, password=place.password, env=h.env(db))
    assert place.checksums() == expected
    assert db.checksums() == expected  # the source was not touched


@pytest.mark.parametrize("h", HARNESSES)
def test_killed_dump_tool_leaves_no_object_and_no_manifest(
    h: EngineHarness, request: pytest.FixtureRequest, tmp_path: Path, s3_server: S3Server,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    db = h.source(request)
    h.grow(request, db)
    bucket = s3_server.make_bucket()
    s3 = dataclasses.replace(s3_server.target(bucket, part_size=5), name="s3")
    setup = setup_for(h, tmp_path, db, compression="none",
                      targets=[local_target(tmp_path / "backups"), s3])
    for k, v in {**h.env(db), **h.kill_env}.items():
        monkeypatch.setenv(k, v)  # run_backup runs in this process
    cfg = config_mod.load(setup.config)
    progress = KillOnFirstBytes(h.dump_tool, by_argv=h.kill_by_argv)
    with pytest.raises(DumpFailed) as caught:
        run_backup(cfg, cfg.job("orders"), progress)
    assert progress.killed, f"{h.dump_tool} was never seen running"
    message = caught.value.message
    assert h.kill_says.format(tool=h.dump_tool) in message and "SIGKILL" in message, message
    assert caught.value.exit_code == 3
    assert files_under(tmp_path / "backups") == []
    assert s3_state(s3_server, bucket) == ([], [])
    assert setup.list_json("orders") == []


@pytest.mark.parametrize(("h", "fault"), FAULTS)
def test_database_fault_is_exit_8_without_the_password(
    h: EngineHarness, fault: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = h.source(request)
    f = h.faults[fault]
    url, password = f.url(db), f.password(db)
    setup = setup_for(h, tmp_path, db, url=url, password=password)
    env = {**h.env(db), **(h.reject_env if password == WRONG else {})}
    proc = setup.run("backup", "orders", env=env)
    assert proc.returncode == 8, proc.stderr
    for text in f.says:
        assert text in (proc.stderr.lower() if text.islower() else proc.stderr), proc.stderr
    assert password not in proc.stdout + proc.stderr
    assert WRONG not in proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    backups = tmp_path / "backups"
    assert not backups.exists() or files_under(backups) == []


@pytest.mark.parametrize("h", HARNESSES)
def test_non_empty_target_is_refused_without_clean(
    h: EngineHarness, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    db = h.source(request)
    setup = setup_for(h, tmp_path, db, check=True)
    setup.run("backup", "orders", env=h.env(db), check=True)
    expected = db.checksums()
    h.dirty(db)
    place = h.in_place(db)
    before = place.checksums()
    assert before != expected

    refused = restore(setup, env=h.env(db), check=False)
    assert refused.returncode == 7, refused.stderr
    for text in h.refusal_says:
        assert text in refused.stderr, refused.stderr
    assert "Traceback" not in refused.stderr
    assert place.checksums() == before  # nothing changed

    restore(setup, "--clean", env=h.env(db))
    assert place.checksums() == expected


@pytest.mark.parametrize("encryption", ["none", "age"])
@pytest.mark.parametrize("h", HARNESSES)
def test_password_never_in_argv_output_or_files(
    h: EngineHarness, encryption: str, request: pytest.FixtureRequest, tmp_path: Path,
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    db = h.source(request)
    h.grow(request, db)
    canary = h.canary(request, db)
    secrets = [canary.password, WRONG, *canary.secrets]
    setup = setup_for(h, tmp_path, db, url=canary.url, password=canary.password,
                      compression="none", encryption=encryption)
    bad = setup_for(h, tmp_path / "bad", db, url=canary.url, password=WRONG,
                    encryption=encryption, targets=[local_target(tmp_path / "backups")])
    env = h.env(db)
    place = canary.place
    before = private_dirs()
    started = time.time()
    with ArgvWatcher() as watcher:
        outputs = [
            setup.run("-vv", "backup", "orders", env=env, check=True),
            setup.run("-vv", "list", "orders", env=env, check=True),
            restore(setup, "-vv", to=place.to, password=place.password, env=env),
        ]
        failed = bad.run("-vv", "backup", "orders", env={**env, **h.reject_env})
        outputs.append(failed)
    assert failed.returncode == 8, failed.stderr
    assert place.checksums() == db.checksums()
    assert any(h.dump_tool.encode() in c for c in watcher.seen), f"never saw {h.dump_tool}"
    if h.restore_tool is not None:
        assert any(h.restore_tool in c for c in watcher.seen), "never saw the restore tool"
    for cmd in watcher.seen:
        for secret in secrets:
            assert secret.encode() not in cmd, cmd
    for proc in outputs:
        for secret in secrets:
            assert secret not in proc.stdout + proc.stderr
    for secret in secrets:
        assert files_containing(tmp_path / "backups", secret.encode(), started) == []
    ours = str(tmp_path_factory.getbasetemp().parent)  # test dirs (config, password files)
    hits = files_containing(Path("/tmp"), canary.password.encode(), started)
    assert [f for f in hits if not f.startswith(ours)] == []
    assert private_dirs() - before == set()
