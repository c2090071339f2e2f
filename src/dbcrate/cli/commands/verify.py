"""``dbcrate verify JOB (--latest | --id ID) [--target T] [--identity F] [--json]``:
restore a backup into a disposable server and check it (docs/verify.md). Exit 0 pass,
20 fail, 21 alarm; without a verdict the usual codes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dbcrate.cli.commands.restore import explain, keys
from dbcrate.cli.options import add_selection, load_config, selector
from dbcrate.cli.output import print_json
from dbcrate.errors import DbcrateError
from dbcrate.operations.verify import run_verify


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``verify`` to the subparsers ``sub``."""
    p = sub.add_parser("verify", parents=[common],
                       help="restore a backup into a disposable server and check it")
    p.add_argument("job", metavar="JOB")
    add_selection(p, at=False)
    p.add_argument("--target", metavar="T", help="read from this target (default: the "
                   "job's targets in order)")
    p.add_argument("--identity", "-i", metavar="FILE", help="age identity file "
                   "(default: $DBCRATE_IDENTITY_FILE)")
    p.add_argument("--json", action="store_true", help="print the verdict as one JSON object")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Verify one backup; the exit code is the verdict's (0 / 20 / 21)."""
    cfg = load_config(args)
    job = cfg.job(args.job)
    try:
        report = run_verify(cfg, job, selector(args), keys=keys(args, job.encryption_key),
                            target=args.target)
    except DbcrateError as err:
        explain(err, args)
        raise
    verdict = report.verdict
    if args.json:
        print_json(report.as_json())
    else:
        took = (f" (restored in {report.restore_seconds:.1f}s)"
                if report.restore_seconds is not None else "")
        sys.stdout.write(f"{job.name}: backup {report.backup_id} from {report.target}: "
                         f"{verdict.result}{took}\n")
        for c in report.checks:
            sys.stdout.write(f"  {c.status:<5} {c.name or c.kind}: {c.detail}\n")
        if verdict.reason:
            sys.stdout.write(f"  reason: {verdict.reason}\n")
    return verdict.exit_code
