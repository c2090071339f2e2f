"""``dbcrate audit verify`` and ``dbcrate audit list [--job J] [--event E] [--json]``:
the hash-chained audit log in the state dir (docs/agent.md)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dbcrate import audit, config


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``audit`` command group to the subparsers ``sub``."""
    p = sub.add_parser("audit", parents=[common], help="verify or list the audit log")
    asub = p.add_subparsers(dest="audit_command", metavar="SUBCOMMAND", parser_class=type(p))
    asub.required = True
    v = asub.add_parser("verify", parents=[common],
                        help="check the hash chain (exit 5 naming the first bad record)")
    v.add_argument("--state-dir", metavar="DIR", help="default: [agent] state_dir")
    v.set_defaults(handler=verify)
    ls = asub.add_parser("list", parents=[common], help="print audit records")
    ls.add_argument("--state-dir", metavar="DIR", help="default: [agent] state_dir")
    ls.add_argument("--job", metavar="J", help="only records of this job")
    ls.add_argument("--event", metavar="E", help="only this event (e.g. backup.ok)")
    ls.add_argument("--json", action="store_true",
                    help="print the records as stored, one JSON object per line")
    ls.set_defaults(handler=list_)


def _dir(args: argparse.Namespace) -> Path:
    if args.state_dir:
        return Path(args.state_dir).expanduser()
    return config.load(config.find_config(args.config)).agent.state_path


def verify(args: argparse.Namespace) -> int:
    """Exit 0 if the chain is whole; raises ``AuditChainBroken`` (exit 5) otherwise."""
    state = _dir(args)
    count = audit.verify(state)
    sys.stdout.write(f"{state / audit.FILE_NAME}: {count} records, chain intact\n")
    return 0


def list_(args: argparse.Namespace) -> int:
    path = _dir(args) / audit.FILE_NAME
    if not path.exists():
        return 0
    with open(path, encoding="utf-8") as f:
        lines = [line for line in f if line.strip()]
    for n, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
        except ValueError:
            raise audit.AuditChainBroken(f"{path}: line {n} is not a JSON record") from None
        if args.job and rec.get("job") != args.job:
            continue
        if args.event and rec.get("event") != args.event:
            continue
        if args.json:
            sys.stdout.write(line if line.endswith("\n") else line + "\n")
            continue
        extra = " ".join(f"{k}={rec[k]}" for k in ("job", "trigger", "backup_id", "target",
                                                   "size", "error") if k in rec)
        sys.stdout.write(f"{rec.get('seq')} {rec.get('ts')} {rec.get('event')} {extra}\n")
    return 0
