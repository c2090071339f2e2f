"""``dbcrate verify`` refuses bad verification settings at load (exit 2, naming file and
key) and gives no verdict without a backup (exit 9); no server is started."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.lib.e2e import local_target, make_setup

BAD = {
    "no expectation": ('name = "a"\nsql = "SELECT 1"\n', "checks[0]", "exactly one"),
    "two expectations": ('name = "a"\nsql = "SELECT 1"\nmin_rows = 1\nequals = 1\n',
                         "checks[0]", "exactly one"),
    "between descending": ('name = "a"\nsql = "SELECT 1"\nbetween = [5, 1]\n',
                           "checks[0].between", "ascending"),
    "no name": ('sql = "SELECT 1"\nmin_rows = 1\n', "checks[0].name", "required"),
    "bad severity": ('name = "a"\nsql = "SELECT 1"\nmin_rows = 1\nseverity = "meh"\n',
                     "checks[0].severity", "fail"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_checks_are_refused_at_load_naming_file_and_key(tmp_path: Path, case: str) -> None:
    body, key, words = BAD[case]
    setup = make_setup(tmp_path, url="postgresql://127.0.0.1:1/x", password="pw",
                       targets=[local_target(tmp_path / "backups")])
    with open(setup.config, "a", encoding="utf-8") as f:
        f.write("\n[[backup.jobs.checks]]\n" + body)
    proc = setup.run("verify", "orders", "--latest")
    assert proc.returncode == 2, proc.stderr
    assert str(setup.config) in proc.stderr and key in proc.stderr, proc.stderr
    assert words in proc.stderr and "Traceback" not in proc.stderr


def test_duplicate_names_and_checks_on_redis_are_refused(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, url="postgresql://127.0.0.1:1/x", password="pw",
                       targets=[local_target(tmp_path / "backups")])
    check = '\n[[backup.jobs.checks]]\nname = "a"\nsql = "SELECT 1"\nmin_rows = 1\n'
    with open(setup.config, "a", encoding="utf-8") as f:
        f.write(check + check)
    proc = setup.run("verify", "orders", "--latest")
    assert proc.returncode == 2 and "checks[1].name" in proc.stderr, proc.stderr
    assert "duplicate" in proc.stderr
    redis = make_setup(tmp_path / "r", url="redis://127.0.0.1:1/0", password="pw",
                       engine="redis", targets=[local_target(tmp_path / "backups")])
    with open(redis.config, "a", encoding="utf-8") as f:
        f.write(check)
    proc = redis.run("verify", "orders", "--latest")
    assert proc.returncode == 2 and "redis" in proc.stderr and ".checks" in proc.stderr


def test_bad_alarm_values_are_refused(tmp_path: Path) -> None:
    for key, value in (("verify_rto_alarm", "soon"), ("verify_row_drop_alarm", 150),
                       ("verify_check_timeout", "forever"), ("count_rows", "sometimes"),
                       ("verify_schedule", "every day")):
        setup = make_setup(tmp_path / key, url="postgresql://127.0.0.1:1/x", password="pw",
                           targets=[local_target(tmp_path / "backups")],
                           job_extra={key: value})
        proc = setup.run("verify", "orders", "--latest")
        assert proc.returncode == 2 and key in proc.stderr, proc.stderr


def test_no_backup_is_exit_9_and_no_verdict(tmp_path: Path) -> None:
    setup = make_setup(tmp_path, url="postgresql://127.0.0.1:1/x", password="pw",
                       targets=[local_target(tmp_path / "backups")])
    (tmp_path / "backups").mkdir()
    proc = setup.run("verify", "orders", "--latest", "--json")
    assert proc.returncode == 9, proc.stderr
    assert proc.stdout == ""
