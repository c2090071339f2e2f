"""A user's mistake is never an internal error, and encryption is never silently off:
the real CLI against a real PostgreSQL server, a local target, a real full device
(/dev/full) and moto with IAM authentication enforced."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from dbcrate.codecs.aesgcm import MAGIC as AES_MAGIC
from dbcrate.codecs.age import generate_identity
from tests.lib.config_cases import PRECEDENCE
from tests.lib.e2e import DBCRATE, Setup, local_target, make_setup
from tests.servers.postgres import PgDatabase
from tests.servers.s3 import S3Server

AGE_MAGIC = b"age-encryption.org/v1\n"


def clean(proc: subprocess.CompletedProcess[str], code: int) -> str:
    """Assert exit ``code`` with one error line and a hint, and no traceback."""
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert "dbcrate: error: " in proc.stderr and "\nhint: " in proc.stderr, proc.stderr
    return proc.stderr


ACCEPTED = {k: v for k, v in PRECEDENCE.items() if not v[2].startswith("!")}


@pytest.mark.parametrize("case", list(ACCEPTED))
def test_every_accepted_precedence_case_stores_what_it_says(
    tmp_path: Path, pg_db: PgDatabase, case: str
) -> None:
    """Each accepted case backs up for real; the stored object starts with the age header
    or the aes magic unless the effective setting is none, and only then does the
    output say UNENCRYPTED."""
    backup, job, expected = ACCEPTED[case]
    (tmp_path / "pw").write_text(pg_db.password)
    cfg = tmp_path / "dbcrate.toml"
    cfg.write_text(
        f'[backup]\ncompression = "none"\n{backup}\n'
        f'[backup.targets.local]\npath = "{tmp_path / "backups"}"\n'
        f'[[backup.jobs]]\nname = "j"\nurl = "{pg_db.url}"\n'
        f'password_file = "{tmp_path / "pw"}"\n{job}\n'
    )
    proc = subprocess.run([DBCRATE, "--config", str(cfg), "backup"], capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr
    assert ("UNENCRYPTED" in proc.stdout) == (expected == "none"), proc.stdout
    [listed] = json.loads(subprocess.run(
        [DBCRATE, "--config", str(cfg), "list", "j", "--json"], capture_output=True,
        text=True, timeout=60, check=True).stdout)
    assert listed["encryption"] == expected
    head = (tmp_path / "backups" / listed["key"]).read_bytes()[:32]
    magic = {"age": AGE_MAGIC, "aes-256-gcm": AES_MAGIC, "none": b"PGDMP"}[expected]
    assert head.startswith(magic), head
    if expected != "none":
        assert b"PGDMP" not in (tmp_path / "backups" / listed["key"]).read_bytes()


@pytest.fixture
def backed_up(tmp_path: Path, pg_db: PgDatabase) -> Setup:
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")])
    setup.run("backup", check=True)
    return setup


def test_cat_to_a_full_disk_is_a_clean_error(backed_up: Setup) -> None:
    """``> /dev/full``: a real device that answers every write with ENOSPC."""
    with open("/dev/full", "wb") as full:
        run = subprocess.run(
            [DBCRATE, "--config", str(backed_up.config), "cat", "orders", "--latest",
             "-i", str(backed_up.identity)],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
        )
    proc = subprocess.CompletedProcess(run.args, run.returncode, "", run.stderr)
    err = clean(proc, 14)
    assert "cannot write the dump to stdout" in err and "incomplete" in err
    assert "No space left on device" in err


@pytest.mark.parametrize("command", [["list", "orders", "--json"], ["grants", "orders"]])
def test_any_output_to_a_full_disk_is_exit_14(backed_up: Setup, command: list[str]) -> None:
    """Every command's stdout, not only cat's: ENOSPC is the machine's state, not a bug."""
    with open("/dev/full", "wb") as full:
        run = subprocess.run(
            [DBCRATE, "--config", str(backed_up.config), *command],
            stdout=full, stderr=subprocess.PIPE, text=True, timeout=120, check=False,
        )
    err = clean(subprocess.CompletedProcess(run.args, run.returncode, "", run.stderr), 14)
    assert "cannot write the output" in err and "No space left on device" in err


@pytest.mark.parametrize("command", [["--version"], ["--help"], ["list", "--help"]])
def test_help_and_version_to_a_full_disk_are_exit_14(command: list[str]) -> None:
    """argparse swallows a failed write of --help/--version (and Python's own exit did not
    see the buffered text fail): it must not look like success."""
    with open("/dev/full", "wb") as full:
        run = subprocess.run([DBCRATE, *command], stdout=full, stderr=subprocess.PIPE,
                             text=True, timeout=60, check=False)
    err = clean(subprocess.CompletedProcess(run.args, run.returncode, "", run.stderr), 14)
    assert "cannot write the output" in err and "No space left on device" in err


def test_restore_errors_name_the_identity_file_and_hint(
    backed_up: Setup, pg_db_name: str, pg_db: PgDatabase
) -> None:
    to = pg_db.server.url(pg_db_name)
    other = backed_up.dir / "other-identity.txt"
    other.write_text(generate_identity()[0] + "\n")
    err = clean(backed_up.run("restore", "orders", "--latest", "--to", to, "-i", str(other)), 6)
    assert f"(identity file {other})" in err
    bad = backed_up.dir / "bad-identity.txt"
    secret = "AGE-SECRET-KEY-1NOTAKEYATALLXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX"
    bad.write_text(f"# comment\n{secret}\n")
    err = clean(backed_up.run("restore", "orders", "--latest", "--to", to, "-i", str(bad)), 2)
    assert f"identity file {bad}: line 2 is not an age identity" in err
    assert "NOTAKEY" not in err
    err = clean(backed_up.run("cat", "orders", "--latest", "-i", str(bad)), 2)
    assert str(bad) in err
    err = clean(backed_up.run("restore", "orders", "--latest", "--to", to, "--mode", "datadir",
                              "-i", str(backed_up.identity)), 2)
    assert "--mode does not apply to postgres restores" in err and "redis" in err
    assert not PgDatabase(pg_db.server, pg_db_name).exists()


def test_postgres_url_without_database_is_refused(tmp_path: Path, pg_db: PgDatabase) -> None:
    url = pg_db.url.rsplit("/", 1)[0]
    setup = make_setup(tmp_path, url=url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")])
    err = clean(setup.run("backup"), 2)
    assert "names no database" in err
    assert not (tmp_path / "backups").exists() or not any((tmp_path / "backups").rglob("*.*"))


def test_wrong_s3_secret_on_restore_is_a_storage_error_naming_the_credential(
    tmp_path: Path, pg_db: PgDatabase, s3_server: S3Server, pg_db_name: str
) -> None:
    """moto runs with IAM authentication enforced, so a wrong secret is really rejected
    (SignatureDoesNotMatch): that is exit 4 naming the credentials, not "no backups"."""
    s3 = s3_server.target(s3_server.make_bucket())
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password, targets=[s3])
    setup.run("backup", check=True)
    (tmp_path / "s3-secret_key").write_text("not-the-secret-key-0000000000000000000000")
    to = pg_db.server.url(pg_db_name)
    err = clean(setup.run("restore", "orders", "--latest", "--to", to,
                          "-i", str(setup.identity)), 4)
    assert "credentials" in err and "secret_key" in err
    assert "not-the-secret" not in err
    err = clean(setup.run("restore", "orders", "--latest", "--target", "s3", "--to", to,
                          "-i", str(setup.identity)), 4)
    assert "credentials" in err
    assert not PgDatabase(pg_db.server, pg_db_name).exists()


@pytest.mark.parametrize("under", [None, "/srv/staging"])
def test_staging_write_failure_hint_names_staging_dir(tmp_path: Path, under: str | None) -> None:
    """The staging file's write fails on a real full device; the hint names the job's
    staging_dir (its value when set)."""
    from dbcrate.engines.postgres.staging import _write
    from dbcrate.errors import RestoreFailed

    fd = os.open("/dev/full", os.O_WRONLY)
    try:
        with pytest.raises(RestoreFailed) as info:
            _write(fd, b"x" * 100_000, str(tmp_path), under)
    finally:
        os.close(fd)
    assert "No space left on device" in info.value.message
    assert "staging_dir" in info.value.hint
    if under:
        assert f"staging_dir ({under})" in info.value.hint
