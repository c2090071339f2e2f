"""``dbcrate agent [--check] [--verify-only] [--state-dir DIR] [--log-format json]``: the
daemon, in the foreground (docs/agent.md); ``dbcrate agent enroll --server URL --token T``:
join a control plane (docs/control-plane.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbcrate import config
from dbcrate.config import Config
from dbcrate.errors import DbcrateError


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``agent`` command to the subparsers ``sub``."""
    p = sub.add_parser("agent", parents=[common],
                       help="run the scheduler daemon in the foreground")
    p.add_argument("--check", action="store_true",
                   help="validate the config, print each job's next 3 runs, and exit")
    p.add_argument("--state-dir", metavar="DIR",
                   help="state DB, audit log and lock live here (default: [agent] state_dir)")
    p.add_argument("--verify-only", action="store_true",
                   help="run only the jobs' verify_schedule verifications (a verifier host; "
                   "needs [agent] verify_identity_file)")
    p.add_argument("--log-format", choices=("text", "json"), default=None,
                   help="stderr log lines as text or one JSON object each "
                   "(default: [agent] log_format)")
    p.set_defaults(handler=agent)
    asub = p.add_subparsers(dest="agent_command", metavar="[enroll]", parser_class=type(p))
    asub.required = False
    e = asub.add_parser("enroll", parents=[common],
                        help="join a control plane (outbound mTLS only; docs/control-plane.md)")
    e.add_argument("--server", required=True, metavar="URL",
                   help="the control plane's URL (as `dbcrate server enroll-token` shows)")
    tok = e.add_mutually_exclusive_group(required=True)
    tok.add_argument("--token", metavar="T",
                     help="the one-time token (visible in `ps` while enrolling: prefer "
                     "--token-file on a shared host)")
    tok.add_argument("--token-file", metavar="F",
                     help="read the one-time token from file F (`-`: stdin)")
    e.add_argument("--name", metavar="NAME", help="this agent's name (default: the host name)")
    e.add_argument("--state-dir", metavar="DIR", default=argparse.SUPPRESS,
                   help="where the key, certificate and identity go (default: [agent] "
                   "state_dir)")
    e.set_defaults(handler=enroll)


def state_dir(args: argparse.Namespace, cfg: Config) -> Path:
    """``--state-dir`` if given, else the config's ``[agent] state_dir``."""
    given = getattr(args, "state_dir", None)
    return Path(given).expanduser() if given else cfg.agent.state_path


def agent(args: argparse.Namespace) -> int:
    """Run the agent until SIGTERM/SIGINT (exit 0), or check the config (--check).
    With JSON logs, an error that stops the agent is a JSON line too."""
    from dbcrate.agent import logs
    from dbcrate.errors import DbcrateError, UsageError

    fmt = args.log_format
    try:
        path = find_agent_config(args)
        cfg = config.load(path)
        fmt = fmt or cfg.agent.log_format
        logs.setup(fmt, args.verbose)
        if args.check:
            return check(cfg)
        from dbcrate.agent.loop import Agent

        if args.verify_only and not cfg.agent.verify_identity_file:
            raise UsageError("--verify-only needs [agent] verify_identity_file",
                             hint="set it to the age identity file the verifications decrypt "
                             "with (this host then holds the identity: a verifier host)")
        return Agent(path, cfg, state_dir(args, cfg), verify_only=args.verify_only).run()
    except DbcrateError as exc:
        if fmt != "json":
            raise
        logs.setup("json", args.verbose)
        logs.event(logging.ERROR, exc.message + (f" (hint: {exc.hint})" if exc.hint else ""),
                   ev="agent.start")
        return exc.exit_code


#: the config an enrolled agent without a config file of its own runs on (written by
#: ``agent enroll``, found by ``agent`` in its state dir)
STATE_CONFIG = "agent.toml"


def find_agent_config(args: argparse.Namespace) -> Path:
    """The config the agent runs on: ``--config``/``$DBCRATE_CONFIG``/the default places,
    else the ``agent.toml`` that ``agent enroll`` left in the state dir (``--state-dir`` or
    the default one). Raises ``ConfigError`` (the default places named) if none exists."""
    import os

    from dbcrate.config.agent import AgentConfig

    try:
        return config.find_config(args.config)
    except DbcrateError:
        if args.config or os.environ.get("DBCRATE_CONFIG"):
            raise
        given = getattr(args, "state_dir", None)
        state = Path(given).expanduser() if given else AgentConfig().state_path
        if (state / STATE_CONFIG).is_file():
            return state / STATE_CONFIG
        raise


def enroll(args: argparse.Namespace) -> int:
    """Enroll this agent; exit 15 if the token or the server's CA is refused. Without a
    config file, writes ``STATE/agent.toml`` (only ``[agent] state_dir``) so that
    ``dbcrate agent --state-dir STATE`` runs on the server's definitions alone."""
    import json

    from dbcrate.agent.remote.enroll import enroll as do_enroll
    from dbcrate.config.agent import AgentConfig
    from dbcrate.errors import UsageError

    given = getattr(args, "state_dir", None)
    found: Path | None = None
    try:
        found = config.find_config(args.config)
    except DbcrateError:
        if args.config:
            raise
    if given:
        state = Path(given).expanduser()
    else:
        state = config.load(found).agent.state_path if found else AgentConfig().state_path
    if args.token_file:
        source = sys.stdin if Path(args.token_file) == Path("-") else None
        try:
            text = source.read() if source else Path(args.token_file).read_text()
        except OSError as exc:
            raise UsageError(f"cannot read the token file {args.token_file}: "
                             f"{exc.strerror or exc}", hint="pass the file "
                             "`dbcrate server enroll-token` wrote, or --token") from None
        token = text.strip()
    else:
        token = args.token
    e = do_enroll(args.server, token, args.name, state)
    sys.stdout.write(f"enrolled as {e.name} with {e.server}; agents API {e.agent_url}; "
                     f"state in {e.dir}\n")
    if found is None and not (state / STATE_CONFIG).exists():
        cfg_path = state / STATE_CONFIG
        cfg_path.write_text("# written by `dbcrate agent enroll`: no config file was found;\n"
                            "# add local jobs, targets and [agent] keys here (docs/config.md)\n"
                            f"[agent]\nstate_dir = {json.dumps(str(state.resolve()))}\n")
        sys.stdout.write(f"no config file found: wrote {cfg_path}; run "
                         f"`dbcrate agent --state-dir {state}`\n")
    return 0


def check(cfg: Config) -> int:
    """Print each job's next 3 runs in its own zone."""
    from dbcrate.agent.status import job_zone
    from dbcrate.schedule import Schedule, zone

    now = datetime.now(UTC)
    for job in cfg.jobs.values():
        if not job.schedule:
            sys.stdout.write(f"{job.name}: no schedule (the agent does not run it)\n")
            continue
        tz = job_zone(cfg, job)
        runs = Schedule(job.schedule, tz).next_runs(now, 3)
        sys.stdout.write(f"{job.name}: {job.schedule} ({tz})\n")
        for t in runs:
            sys.stdout.write(f"  {t.astimezone(zone(tz)).isoformat()}\n")
    sys.stdout.write("config ok\n")
    return 0
