"""What a command from the control plane does on the agent: ``backup`` (a job of the
effective config, now), ``restore`` (only with ``[agent] identity_file``, from the
agent's own target of that name, into one of its ``[agent.connections]``), ``reindex``
(send the index of every manifest its targets hold). Each returns (status, error)."""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from dbcrate.agent import runner
from dbcrate.agent.logs import event
from dbcrate.config import Config
from dbcrate.engines import RestoreOptions
from dbcrate.errors import DbcrateError
from dbcrate.operations.keys import read_identities
from dbcrate.operations.pipeline import KeyMaterial
from dbcrate.operations.restore import Selector, run_restore

Result = tuple[str, str | None]


def run(link: Any, kind: str, args: dict[str, Any]) -> Result:
    handler = HANDLERS.get(kind)
    if handler is None:
        return "failed", f"unknown command {kind!r}"
    try:
        return handler(link, args)
    except DbcrateError as exc:
        return "failed", exc.message
    except Exception as exc:  # a bug must not end the link; the server sees a failure
        logging.getLogger("dbcrate.agent").exception("command %s", kind)
        return "failed", f"internal error: {type(exc).__name__}"


@contextlib.contextmanager
def _running(agent: Any, name: str) -> Iterator[bool]:
    """Register this thread as a run of ``name`` in the agent's main loop (so SIGTERM
    waits for it, then aborts it with the others); yields False if one is running."""
    with agent.mutex:
        if name in agent.running:
            free = False
        else:
            agent.running[name] = threading.current_thread()
            free = True
    try:
        yield free
    finally:
        if free:
            with agent.mutex:
                agent.running.pop(name, None)
            agent.wake.set()


def backup(link: Any, args: dict[str, Any]) -> Result:
    agent = link.agent
    cfg: Config = agent.config
    name = str(args.get("job", ""))
    job = cfg.jobs.get(name)
    if job is None:
        return "failed", f"no job named {name!r} on this agent"
    with _running(agent, name) as free:
        if not free:
            return "failed", f"a run of {name} is already running"
        run_id = agent.db.start(name, "command", None, datetime.now(UTC))
        out = runner.run_job(cfg, agent.db, agent.audit, job, "command", None, run_id)
    if out.result == "ok":
        link.index()
        return "ok", None
    return "failed", out.error


def restore(link: Any, args: dict[str, Any]) -> Result:
    agent = link.agent
    cfg: Config = agent.config
    if not cfg.agent.identity_file:
        return "failed", "this agent cannot restore: no [agent] identity_file"
    name, to = str(args.get("job", "")), str(args.get("to", ""))
    job = cfg.jobs.get(name)
    if job is None:
        return "failed", f"no job named {name!r} on this agent"
    conn = cfg.agent.connections.get(to)
    if conn is None:
        return "failed", f"no [agent.connections.{to}] on this agent"
    if conn.engine != job.engine:
        return "failed", f"connection {to} is {conn.engine}, the backup is {job.engine}"
    target = str(args.get("target") or "")
    if target not in cfg.targets:
        return "failed", f"no target named {target!r} on this agent"
    backup_id = str(args.get("backup_id", ""))
    runner.audit_quietly(agent.audit, "restore.start", job=name, trigger="command",
                         backup_id=backup_id, target=target)
    keys = KeyMaterial(identities=read_identities(cfg.agent.identity_file))
    try:
        with _running(agent, f"restore:{name}") as free:
            if not free:
                return "failed", f"a restore of {name} is already running"
            run_restore(cfg, job, Selector(backup_id=backup_id), keys=keys,
                        options=RestoreOptions(clean=bool(args.get("clean"))), target=target,
                        to_url=conn.url, to_password=conn.password)
    except DbcrateError as exc:
        runner.audit_quietly(agent.audit, "restore.fail", job=name, trigger="command",
                             backup_id=backup_id, target=target, error=exc.message)
        event(logging.ERROR, f"restore of {name} {backup_id} failed: {exc.message}",
              job=name, ev="restore.fail")
        return "failed", exc.message
    runner.audit_quietly(agent.audit, "restore.ok", job=name, trigger="command",
                         backup_id=backup_id, target=target)
    event(logging.INFO, f"restore of {name} {backup_id} into {to} ok", job=name,
          ev="restore.ok")
    return "ok", None


def reindex(link: Any, args: dict[str, Any]) -> Result:
    link.index(replace=True)
    return "ok", None


HANDLERS = {"backup": backup, "restore": restore, "reindex": reindex}
