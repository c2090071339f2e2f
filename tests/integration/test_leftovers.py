"""Leftovers of a SIGKILL (no clean-up possible): a local temp file, an open S3 multipart
upload. ``list`` notes them (its JSON is unchanged); the next ``backup`` or ``prune``
removes those older than the safe age ($DBCRATE_LEFTOVER_AGE); a temp file of a live
process is never removed; the staged dump of ``restore --jobs`` never has a name."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import time
from pathlib import Path

import pytest

from tests.lib.e2e import Setup, local_target, make_setup
from tests.lib.procs import files_under
from tests.lib.running import Running
from tests.servers.postgres import PgDatabase, new_db_name
from tests.servers.s3 import S3Server, s3_state

NOW = {"DBCRATE_LEFTOVER_AGE": "0"}


def _tmp_files(root: Path) -> list[str]:
    return [f for f in files_under(root) if Path(f).name.startswith(".dbcrate-tmp-")]


def _kill_during_backup(setup: Setup, ready: object, what: str, *,
                        must_kill: bool = True) -> bool:
    """SIGKILL the backup once ``ready``; whether the kill found it still running."""
    run = Running(setup, "backup", "orders")
    run.wait_for(ready, what)  # type: ignore[arg-type]
    os.kill(run.proc.pid, signal.SIGKILL)
    run.proc.communicate(timeout=120)
    if must_kill:
        assert run.proc.returncode == -signal.SIGKILL
    return run.proc.returncode == -signal.SIGKILL


def test_sigkill_during_a_local_backup_then_backup_removes_the_temp_file(
    tmp_path: Path, pg_big: PgDatabase
) -> None:
    backups = tmp_path / "backups"
    setup = make_setup(tmp_path / "cfg", url=pg_big.url, password=pg_big.password,
                       targets=[local_target(backups)], compression="none")
    _kill_during_backup(setup, lambda: _tmp_files(backups), "a temp file being written")
    [left] = _tmp_files(backups)

    listed = setup.run("list", "orders", "--json", check=True)
    assert json.loads(listed.stdout) == []  # the JSON array is unchanged
    assert "target local holds 1 incomplete upload(s) or temp file(s)" in listed.stderr

    # younger than the default safe age (1h): kept (it might belong to a slow writer)
    setup.run("backup", "orders", check=True)
    assert left in _tmp_files(backups)
    # with a safe age of 0 the next backup removes it, and stores its own backup
    setup.run("backup", "orders", env=NOW, check=True)
    assert _tmp_files(backups) == []
    assert len(setup.list_json("orders")) == 2
    assert "incomplete" not in setup.run("list", "orders", check=True).stderr


def test_a_live_processs_temp_file_is_never_removed(tmp_path: Path, pg_db: PgDatabase) -> None:
    backups = tmp_path / "backups"
    setup = make_setup(tmp_path / "cfg", url=pg_db.url, password=pg_db.password,
                       targets=[local_target(backups)])
    setup.run("backup", "orders", check=True)
    day = next(p for p in backups.rglob("*") if p.is_file()).parent
    live = day / f".dbcrate-tmp-{os.getpid()}-{'a' * 32}"  # ours: this process is alive
    dead = day / f".dbcrate-tmp-{_dead_pid()}-{'b' * 32}"
    old = day / f".dbcrate-tmp-{'c' * 32}"  # the name before pids were added
    hours_ago = time.time() - 7200
    for f in (live, dead, old):
        f.write_bytes(b"partial")
        os.utime(f, (hours_ago, hours_ago))
    setup.run("backup", "orders", check=True)  # default safe age: all are 2h old
    assert live.exists()
    assert not dead.exists() and not old.exists()


def _dead_pid() -> int:
    pid = os.fork()
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)
    return pid


@pytest.mark.parametrize("command", ["backup", "prune"])
def test_sigkill_during_an_s3_backup_then_the_upload_is_aborted(
    tmp_path: Path, pg_big: PgDatabase, s3_server: S3Server, command: str
) -> None:
    for attempt in range(5):  # on a loaded machine the dump may finish before the kill lands
        bucket = s3_server.make_bucket()
        s3 = dataclasses.replace(s3_server.target(bucket, part_size=5), name="s3")
        setup = make_setup(tmp_path / f"try{attempt}", url=pg_big.url,
                           password=pg_big.password, targets=[s3], compression="none")
        killed = _kill_during_backup(setup, lambda b=bucket: _uploaded_a_part(s3_server, b),
                                     "a multipart upload with a part", must_kill=False)
        if killed and len(s3_state(s3_server, bucket)[1]) == 1:
            break
    else:
        pytest.fail("five SIGKILLs all landed after the upload had completed")

    listed = setup.run("list", "orders", "--json", check=True)
    assert json.loads(listed.stdout) == []
    assert "target s3 holds 1 incomplete upload(s)" in listed.stderr

    setup.run(command, "orders", check=True)  # default safe age: a fresh upload is kept
    assert len(s3_state(s3_server, bucket)[1]) == 1
    out = setup.run(command, "orders", *(["--json"] if command == "prune" else []), env=NOW,
                    check=True)
    objects, uploads = s3_state(s3_server, bucket)
    assert uploads == []
    if command == "prune":
        assert json.loads(out.stdout)[0]["aborted_uploads"] == 1
        assert objects == []
    else:
        assert len(setup.list_json("orders")) == 2  # each backup stored its own


def _uploaded_a_part(server: S3Server, bucket: str) -> bool:
    """An open upload has a part (moto reports a fixed 2010 ``Initiated`` time, so only a
    part's time shows the upload is fresh)."""
    client = server.client()
    for up in client.list_multipart_uploads(Bucket=bucket).get("Uploads", []):
        if client.list_parts(Bucket=bucket, Key=up["Key"], UploadId=up["UploadId"]).get("Parts"):
            return True
    return False


def test_sigkill_during_pg_restore_jobs_leaves_no_plaintext(
    tmp_path: Path, pg_backed: object, pg_big: PgDatabase
) -> None:
    staging = tmp_path / "staging"
    staging.mkdir()
    setup = pg_backed.setup  # type: ignore[attr-defined]
    name = new_db_name("killed")
    run = Running(setup, "restore", "orders", "--latest", "--jobs", "2",
                  "--to", pg_big.server.url(name), "--identity", str(setup.identity),
                  env={"TMPDIR": str(staging)})
    try:
        run.wait_for(lambda: run.tool("pg_restore", arg="--jobs="), "pg_restore running")
        assert list(staging.iterdir()) == []  # the staged dump has no name, even now
        os.kill(run.proc.pid, signal.SIGKILL)
        run.proc.communicate(timeout=120)
        assert list(staging.iterdir()) == []
    finally:
        for pid, comm in run.seen.items():
            if comm == "pg_restore":
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        pg_big.server.drop_database(name)
