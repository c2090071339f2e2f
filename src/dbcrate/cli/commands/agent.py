"""``dbcrate agent [--check] [--verify-only] [--state-dir DIR] [--log-format json]``: the
daemon, in the foreground (docs/agent.md)."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbcrate import config
from dbcrate.config import Config


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
        path = config.find_config(args.config)
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
