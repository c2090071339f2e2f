"""``dbcrate verify JOB (--latest | --id ID) [--target T] [--identity F] [--json]``:
restore a backup into a disposable server and check it (docs/verify.md). Exit 0 pass,
20 fail, 21 alarm; without a verdict the usual codes."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dbcrate.cli.commands.restore import explain, keys
from dbcrate.cli.options import load_config, selector
from dbcrate.cli.output import print_error, print_json
from dbcrate.config import Config, JobConfig
from dbcrate.errors import DbcrateError, IntegrityError


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``verify`` to the subparsers ``sub``."""
    p = sub.add_parser("verify", parents=[common],
                       help="restore a backup into a disposable server and check it")
    p.add_argument("job", metavar="JOB")
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--latest", action="store_true", help="verify the newest backup")
    g.add_argument("--id", dest="backup_id", metavar="ID", help="verify the backup with this "
                   "id (or a unique prefix of at least 8 characters)")
    g.add_argument("--history", action="store_true", help="print the verdicts of the last "
                   "--days days from the stored records (no restore; --identity adds the "
                   "MAC check)")
    p.add_argument("--days", type=int, default=14, metavar="N",
                   help="days of --history (default 14)")
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
    if args.history:
        return _history(cfg, job, args)
    from dbcrate.agent.verifying import verify_and_record
    from dbcrate.cli.auditing import record

    try:
        report = verify_and_record(cfg, job, selector(args), keys(args, job.encryption_key),
                                   trigger="manual", state_dir=cfg.agent.state_path,
                                   audit=lambda ev, **f: record(cfg, ev, **f),
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


def _history(cfg: Config, job: JobConfig, args: argparse.Namespace) -> int:
    """Print the history; exit 5 for a broken chain or MAC."""
    from dbcrate.operations.verify import run_history  # lazy: psycopg, sandbox (start-up)

    material = keys(args, job.encryption_key) if (args.identity or job.encryption_key) \
        else None
    from dbcrate.agent.verifying import written_records

    name = args.target or job.targets[0]
    out = run_history(cfg, job, days=args.days, target=name, keys=material,
                      known=written_records(cfg.agent.state_path, job.name, name))
    if args.json:
        print_json(out)
    else:
        sys.stdout.write(f"{job.name} on {out['target']}: chain {out['chain']}\n")
        for day in out["days"]:
            sys.stdout.write(f"  {day['date']}  {day['result']}\n")
    if out["chain"] != "ok":
        print_error(IntegrityError(
            f"the verification records of job {job.name} on target {out['target']} are "
            f"not intact: {out['broken_at']}: {out['broken_why']}",
            hint="a record was changed or forged after it was written; verify again and "
            "find out who can write to the target"))
        return IntegrityError.exit_code
    return 0
