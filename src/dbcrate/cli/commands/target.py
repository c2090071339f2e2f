"""``dbcrate target check NAME [--json]``: probe a target step by step."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dbcrate.cli.options import Parser, load_config
from dbcrate.cli.output import print_error, print_json
from dbcrate.errors import StorageError

#: a failed probe exits as a storage error does (docs/exit-codes.md)
PROBE_FAILED = 4


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``target`` command group to the subparsers ``sub``."""
    p = sub.add_parser("target", parents=[common], help="storage targets")
    tsub = p.add_subparsers(dest="target_command", metavar="SUBCOMMAND", parser_class=Parser)
    tsub.required = True
    c = tsub.add_parser("check", parents=[common],
                        help="write/read/list/delete probe of a target")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--json", action="store_true", help="print the steps, versioning, "
                   "object lock and notes as JSON")
    c.set_defaults(handler=check)


def check(args: argparse.Namespace) -> int:
    """Run ``connect`` (SFTP), ``list``, ``write``, ``read``, ``delete`` on the target and
    print each step (or the JSON report). Exit 0 if all passed, else 4 (after printing)."""
    from dbcrate.operations.probe import check_target

    report, where = check_target(load_config(args), args.name)
    if getattr(args, "json", False):
        print_json(report.json())
    else:
        sys.stdout.write(f"target {args.name} ({where}):\n")
        for s in report.steps:
            state = "ok    " if s.ok else "FAILED"
            sys.stdout.write(f"  {s.step:<8} {state} {s.seconds:.2f}s"
                             f"{': ' + s.error if s.error else ''}\n")
        sys.stdout.write(f"  versioning: {report.versioning or 'unknown'}, "
                         f"object lock: {_lock(report.object_lock)}\n")
        for note in report.notes:
            sys.stdout.write(f"  note: {note}\n")
    if not report.ok:
        failed = next(s for s in report.steps if not s.ok)
        print_error(StorageError(
            f"target {args.name} ({where}) failed at step '{failed.step}': "
            f"{failed.error}", failed.hint or "fix the target's settings (docs/config.md) "
            "and run `dbcrate target check` again"))
        return PROBE_FAILED
    if not getattr(args, "json", False):
        total = sum(s.seconds for s in report.steps)
        sys.stdout.write(f"target {args.name} ({where}): write, read, list and "
                         f"delete ok in {total:.2f}s\n")
    return 0


def _lock(value: bool | None) -> str:
    return "unknown" if value is None else ("on" if value else "off")
