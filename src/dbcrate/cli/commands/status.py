"""``dbcrate status [--json]``: each job's schedule, last run, last success and max_age,
from the config and the agent's state DB; exit 12 if a job is failing or overdue."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dbcrate import config
from dbcrate.cli.output import print_json


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``status`` command to the subparsers ``sub``."""
    p = sub.add_parser("status", parents=[common],
                       help="jobs' last runs and health, from the agent's state (exit 12 "
                       "if unhealthy)")
    p.add_argument("--state-dir", metavar="DIR", help="default: [agent] state_dir")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(handler=status)


def status(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from dbcrate.agent.status import UNHEALTHY, healthy
    from dbcrate.agent.status import status as compute

    cfg = config.load(config.find_config(args.config))
    if args.state_dir:
        cfg = replace(cfg, agent=replace(cfg.agent, state_dir=args.state_dir))
    doc = compute(cfg)
    if args.json:
        print_json(doc)
    else:
        a = doc["agent"]
        running = f"running, pid {a['pid']}" if a["running"] else "not running"
        sys.stdout.write(f"agent: {running}\n")
        for j in doc["jobs"]:
            last = j["last_run"]
            ok = j["last_success"]
            sys.stdout.write(
                f"{j['job']}: schedule {j['schedule'] or '-'} ({j['timezone']}), next "
                f"{j['next_run'] or '-'}\n"
                f"  last run: {_run(last)}\n"
                f"  last success: {ok['finished_at'] + ' ' + str(ok['backup_id']) if ok else '-'}"
                f"{'  OVERDUE (max_age ' + j['max_age'] + ')' if j['max_age_exceeded'] else ''}\n")
            checked = j["verify"]["last"]
            if checked is not None or j["verify"]["schedule"]:
                sys.stdout.write(f"  last verification: {_verified(checked)}, next "
                                 f"{j['verify']['next_run'] or '-'}\n")
    return 0 if healthy(doc) else UNHEALTHY


def _verified(last: dict[str, Any] | None) -> str:
    if last is None:
        return "-"
    text = f"{last['result']} ({last['trigger']}) at {last['finished_at']}"
    return text + (f": {last['error']}" if last["error"] else "")


def _run(last: dict[str, Any] | None) -> str:
    if last is None:
        return "-"
    text = f"{last['result']} ({last['trigger']}) at {last['started_at']}"
    return text + (f": {last['error']}" if last["error"] else "")
