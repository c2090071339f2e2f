"""The agent's config: ``[agent]``, ``[[notify]]`` and the job keys ``schedule``,
``timezone``, ``max_age`` (docs/config.md, docs/agent.md). Every error names the file
and the key; a notification URL is a secret and is never shown."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from dbcrate.config.keys import AGENT_KEYS, CONNECTION_KEYS, ENGINE_OPTIONS, NOTIFY_KEYS
from dbcrate.config.secrets import expand, read_secret_file
from dbcrate.config.timing import ScheduleProblem, cron_expr, parse_duration, zone
from dbcrate.errors import ConfigError

NOTIFY_EVENTS = ("failure", "success", "max_age", "max_rpo")
LOG_FORMATS = ("text", "json")


def default_state_dir() -> str:
    """``$DBCRATE_STATE_DIR``, else ``$STATE_DIRECTORY`` (systemd's StateDirectory=),
    else /var/lib/dbcrate for root, else the user's state dir (platformdirs), so no root
    is needed."""
    if os.environ.get("DBCRATE_STATE_DIR"):
        return os.environ["DBCRATE_STATE_DIR"]
    if os.environ.get("STATE_DIRECTORY"):
        return os.environ["STATE_DIRECTORY"].split(":")[0]
    if os.geteuid() == 0:
        return "/var/lib/dbcrate"
    import platformdirs

    return platformdirs.user_state_dir("dbcrate")


@dataclass(frozen=True)
class Connection:
    """One ``[agent.connections.NAME]`` (``password`` is a secret, never in a repr)."""

    engine: str
    url: str
    password: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class AgentConfig:
    """The ``[agent]`` table."""

    state_dir: str = field(default_factory=default_state_dir)
    concurrency: int = 1
    jitter: timedelta = timedelta(0)
    grace_period: timedelta = timedelta(minutes=10)
    timezone: str = "UTC"
    metrics_file: str | None = None
    log_format: str = "text"
    #: the age identity of this agent's verifications (``verify_schedule``); None: this
    #: agent skips them (docs/agent.md)
    verify_identity_file: str | None = None
    #: the age identity a restore dispatched by the control plane decrypts with
    identity_file: str | None = None
    #: ``[agent.connections.NAME]``: the only places such a restore may write
    connections: Mapping[str, Connection] = field(default_factory=dict)

    @property
    def state_path(self) -> Path:
        return Path(self.state_dir).expanduser()


@dataclass(frozen=True)
class NotifyConfig:
    """One ``[[notify]]`` entry. ``url`` is a secret (never in a repr, log or error)."""

    url: str = field(repr=False)
    on: tuple[str, ...] = ("failure", "max_age", "max_rpo")
    jobs: tuple[str, ...] | None = None  # None: every job

    def wants(self, event: str, job: str) -> bool:
        return event in self.on and (self.jobs is None or job in self.jobs)


def _err(source: str, key: str, message: str, hint: str | None = None) -> ConfigError:
    return ConfigError(message, hint, file=source, key=key)


def _unknown(table: Mapping[str, Any], allowed: frozenset[str], where: str, source: str) -> None:
    for k in table:
        if k not in allowed:
            raise _err(source, f"{where}.{k}", "unknown key",
                       hint=f"allowed here: {', '.join(sorted(allowed))}")


def duration(value: Any, source: str, key: str) -> timedelta:
    """A duration value. Raises ``ConfigError`` naming file and key."""
    if not isinstance(value, str):
        raise _err(source, key, f"expected a duration string like \"10m\", got "
                   f"{type(value).__name__}")
    try:
        return parse_duration(value)
    except ScheduleProblem as exc:
        raise _err(source, key, str(exc)) from None


def time_zone(value: Any, source: str, key: str) -> str:
    """A validated IANA zone name. Raises ``ConfigError`` naming file and key."""
    if not isinstance(value, str):
        raise _err(source, key, f"expected a time zone name, got {type(value).__name__}")
    try:
        zone(value)
    except ScheduleProblem as exc:
        raise _err(source, key, str(exc), hint="use an IANA name such as UTC or "
                   "Europe/Berlin") from None
    return value


def parse_agent(raw: Any, source: str) -> AgentConfig:
    """The ``[agent]`` table. Raises ``ConfigError``."""
    if raw is None:
        return AgentConfig()
    if not isinstance(raw, Mapping):
        raise _err(source, "agent", "expected a table")
    _unknown(raw, AGENT_KEYS, "agent", source)
    out: dict[str, Any] = {}
    for key in ("state_dir", "metrics_file", "verify_identity_file", "identity_file"):
        if key in raw:
            value = raw[key]
            if not isinstance(value, str) or not value:
                raise _err(source, f"agent.{key}", "expected a path")
            out[key] = expand(value, file=source, key=f"agent.{key}")
    if "concurrency" in raw:
        c = raw["concurrency"]
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise _err(source, "agent.concurrency", "expected an integer of at least 1")
        out["concurrency"] = c
    for key in ("jitter", "grace_period"):
        if key in raw:
            out[key] = duration(raw[key], source, f"agent.{key}")
    if "timezone" in raw:
        out["timezone"] = time_zone(raw["timezone"], source, "agent.timezone")
    if "log_format" in raw:
        if raw["log_format"] not in LOG_FORMATS:
            raise _err(source, "agent.log_format", f"unknown log format {raw['log_format']!r}",
                       hint="expected text or json")
        out["log_format"] = raw["log_format"]
    if "connections" in raw:
        out["connections"] = _connections(raw["connections"], source)
    return AgentConfig(**out)


def _connections(raw: Any, source: str) -> dict[str, Connection]:
    """``[agent.connections.NAME]`` tables. Raises ``ConfigError`` (never showing a
    password)."""
    engines = tuple(ENGINE_OPTIONS)
    if not isinstance(raw, Mapping):
        raise _err(source, "agent.connections", "expected a table of tables")
    out: dict[str, Connection] = {}
    for name, table in raw.items():
        where = f"agent.connections.{name}"
        if not isinstance(table, Mapping):
            raise _err(source, where, "expected a table")
        _unknown(table, CONNECTION_KEYS, where, source)
        if table.get("engine") not in engines:
            raise _err(source, f"{where}.engine", "expected one of " + ", ".join(engines))
        if not isinstance(table.get("url"), str) or not table["url"]:
            raise _err(source, f"{where}.url", "expected a URL")
        password = None
        if "password" in table:
            password = expand(str(table["password"]), file=source, key=f"{where}.password")
        elif "password_file" in table:
            password = read_secret_file(str(table["password_file"]), file=source,
                                        key=f"{where}.password_file").strip()
        out[str(name)] = Connection(str(table["engine"]), expand(table["url"], file=source,
                                    key=f"{where}.url"), password)
    return out


def parse_notify(raw: Any, source: str, jobs: Mapping[str, Any]) -> tuple[NotifyConfig, ...]:
    """The ``[[notify]]`` array. Raises ``ConfigError`` (never showing a URL)."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise _err(source, "notify", "expected an array of tables ([[notify]])")
    out = []
    for i, entry in enumerate(raw):
        where = f"notify[{i}]"
        if not isinstance(entry, Mapping):
            raise _err(source, where, "expected a table")
        _unknown(entry, NOTIFY_KEYS, where, source)
        if ("url" in entry) == ("url_file" in entry):
            raise _err(source, f"{where}.url", "set exactly one of url and url_file")
        if "url" in entry:
            if not isinstance(entry["url"], str):
                raise _err(source, f"{where}.url", "expected a string")
            url = expand(entry["url"], file=source, key=f"{where}.url")
        else:
            if not isinstance(entry["url_file"], str):
                raise _err(source, f"{where}.url_file", "expected a file path")
            url = read_secret_file(entry["url_file"], file=source, key=f"{where}.url_file")
        _check_url(url.strip(), source, f"{where}.url")
        on = _names(entry.get("on", ["failure", "max_age", "max_rpo"]), source, f"{where}.on")
        for event in on:
            if event not in NOTIFY_EVENTS:
                raise _err(source, f"{where}.on", f"unknown event {event!r}",
                           hint=f"expected some of: {', '.join(NOTIFY_EVENTS)}")
        names = None
        if "jobs" in entry:
            names = _names(entry["jobs"], source, f"{where}.jobs")
            for n in names:
                if n not in jobs:
                    raise _err(source, f"{where}.jobs", f"no job named {n!r}",
                               hint=f"jobs defined: {', '.join(jobs) or 'none'}")
        out.append(NotifyConfig(url=url.strip(), on=on, jobs=names))
    return tuple(out)


def _names(value: Any, source: str, key: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _err(source, key, "expected a list of strings")
    return tuple(value)


def _check_url(url: str, source: str, key: str) -> None:
    """Raises ``ConfigError`` if apprise cannot use ``url`` (the URL is never shown)."""
    import apprise

    scheme = url.split("://", 1)[0] if "://" in url else ""
    if not apprise.Apprise().add(url):
        shown = f" (scheme {scheme!r})" if scheme.isalnum() and len(scheme) < 20 else ""
        raise _err(source, key, f"not a notification URL apprise can use{shown}",
                   hint="see https://github.com/caronc/apprise/wiki for URL forms, e.g. "
                   "json://host/path or mailto://user:pass@host")


def job_schedule(expr: Any, tz: str, source: str, where: str, tz_key: str) -> str | None:
    """Validate a job's ``schedule`` in zone ``tz``. Raises ``ConfigError`` naming the
    key at fault (``timezone`` or ``schedule``)."""
    if expr is None:
        return None
    if not isinstance(expr, str):
        raise _err(source, f"{where}.schedule", "expected a cron expression string")
    try:
        zone(tz)
    except ScheduleProblem as exc:
        raise _err(source, tz_key, str(exc), hint="use an IANA name such as UTC or "
                   "Europe/Berlin") from None
    try:
        cron_expr(expr)
    except ScheduleProblem as exc:
        raise _err(source, f"{where}.schedule", str(exc),
                   hint="five fields: minute hour day-of-month month day-of-week "
                   "(e.g. \"0 3 * * *\"), or @daily, @hourly ...") from None
    return expr


def job_keys(job: Mapping[str, Any], merged: Mapping[str, Any], agent_tz: str, source: str,
             where: str) -> dict[str, Any]:
    """The ``JobConfig`` fields ``schedule``, ``timezone`` and ``max_age`` of one job
    table (``merged``: with the ``[backup]`` defaults). Raises ``ConfigError``."""
    tz = time_zone(job["timezone"], source, f"{where}.timezone") if "timezone" in job else None
    tz_key = f"{where}.timezone" if tz else "agent.timezone"
    return {
        "schedule": job_schedule(job.get("schedule"), tz or agent_tz, source, where, tz_key),
        "timezone": tz,
        "max_age": duration(merged["max_age"], source, f"{where}.max_age")
        if "max_age" in merged else None,
    }
