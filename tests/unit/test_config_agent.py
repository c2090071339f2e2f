"""[agent], [[notify]] and the job keys schedule/timezone/max_age (pure config tests):
every bad value is a ConfigError naming the file and the key."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from dbcrate.config import parse
from dbcrate.config.agent import default_state_dir
from dbcrate.errors import ConfigError


def raw(job: dict[str, Any] | None = None, **top: Any) -> dict[str, Any]:
    return {
        "backup": {"encrypt": False, "targets": {"local": {"path": "/tmp/x"}},
                   "jobs": [{"name": "orders", "url": "postgresql://h/db", **(job or {})}]},
        **top,
    }


def test_defaults_and_values() -> None:
    cfg = parse(raw({"schedule": "0 3 * * *", "timezone": "Europe/Berlin", "max_age": "26h"},
                    agent={"state_dir": "/srv/state", "concurrency": 2, "jitter": "30s",
                           "grace_period": "5m", "timezone": "America/New_York",
                           "metrics_file": "/srv/m.prom", "log_format": "json"},
                    notify=[{"url": "json://hooks.example/x", "jobs": ["orders"]}]),
                source="f.toml")
    job = cfg.jobs["orders"]
    assert (job.schedule, job.timezone, job.max_age) == ("0 3 * * *", "Europe/Berlin",
                                                         timedelta(hours=26))
    a = cfg.agent
    assert (a.state_dir, a.concurrency, a.jitter, a.grace_period, a.timezone, a.metrics_file,
            a.log_format) == ("/srv/state", 2, timedelta(seconds=30), timedelta(minutes=5),
                              "America/New_York", "/srv/m.prom", "json")
    [n] = cfg.notify
    assert n.on == ("failure", "max_age", "max_rpo") and n.jobs == ("orders",)
    assert "hooks.example" not in repr(n)
    plain = parse(raw())
    assert plain.agent.grace_period == timedelta(minutes=10)
    assert plain.agent.concurrency == 1 and plain.notify == ()
    assert plain.jobs["orders"].timezone is None and plain.jobs["orders"].max_age is None


def test_backup_max_age_is_a_default(monkeypatch: pytest.MonkeyPatch) -> None:
    r = raw()
    r["backup"]["max_age"] = "2d"
    assert parse(r).jobs["orders"].max_age == timedelta(days=2)


def test_state_dir_default_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DBCRATE_STATE_DIR", "/srv/a")
    assert default_state_dir() == "/srv/a"
    monkeypatch.delenv("DBCRATE_STATE_DIR")
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/dbcrate")
    assert default_state_dir() == "/var/lib/dbcrate"


@pytest.mark.parametrize(("job", "top", "message"), [
    ({"schedule": "0 3 * * *", "timezone": "Mars/Olympus"}, {},
     "f.toml: backup.jobs[0].timezone: unknown time zone 'Mars/Olympus'"),
    ({"schedule": "0 25 * * *"}, {}, "f.toml: backup.jobs[0].schedule: invalid cron"),
    ({"schedule": "@sometimes"}, {}, "f.toml: backup.jobs[0].schedule: unknown schedule alias"),
    ({"schedule": 3}, {}, "f.toml: backup.jobs[0].schedule: expected a cron expression"),
    ({"max_age": "26 hours"}, {}, "f.toml: backup.jobs[0].max_age: invalid duration"),
    ({"schedule": "0 3 * * *"}, {"agent": {"timezone": "Nowhere/City"}},
     "f.toml: agent.timezone: unknown time zone 'Nowhere/City'"),
    ({}, {"agent": {"grace_period": "10"}}, "f.toml: agent.grace_period: invalid duration"),
    ({}, {"agent": {"jitter": 5}}, "f.toml: agent.jitter: expected a duration"),
    ({}, {"agent": {"concurrency": 0}}, "f.toml: agent.concurrency: expected an integer"),
    ({}, {"agent": {"log_format": "xml"}}, "f.toml: agent.log_format: unknown log format"),
    ({}, {"agent": {"statedir": "/x"}}, "f.toml: agent.statedir: unknown key"),
    ({}, {"notify": [{"url": "nope://secret@host"}]},
     "f.toml: notify[0].url: not a notification URL apprise can use (scheme 'nope')"),
    ({}, {"notify": [{"url": "json://h/x", "on": ["sometimes"]}]},
     "f.toml: notify[0].on: unknown event 'sometimes'"),
    ({}, {"notify": [{"url": "json://h/x", "jobs": ["nosuch"]}]},
     "f.toml: notify[0].jobs: no job named 'nosuch'"),
    ({}, {"notify": [{"on": ["failure"]}]}, "f.toml: notify[0].url: set exactly one"),
    ({}, {"notify": [{"url": "json://h/x", "to": "x"}]}, "f.toml: notify[0].to: unknown key"),
    ({}, {"extra": {}}, "f.toml: extra: unknown key"),
])
def test_bad_values_name_file_and_key(job: dict[str, Any], top: dict[str, Any],
                                      message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        parse(raw(job, **top), source="f.toml")
    assert message in exc.value.message
    assert "secret" not in str(exc.value)


def test_notify_url_from_file_and_env(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "url"
    f.write_text("json://hooks.example/from-file\n")
    f.chmod(0o600)
    monkeypatch.setenv("HOOK", "json://hooks.example/from-env")
    cfg = parse(raw(notify=[{"url_file": str(f)}, {"url": "${HOOK}", "on": ["success"]}]))
    assert [n.url for n in cfg.notify] == ["json://hooks.example/from-file",
                                           "json://hooks.example/from-env"]
