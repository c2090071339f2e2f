"""``dbcrate prune [JOB] [--target T] [--dry-run] [--json]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dbcrate import catalog
from dbcrate.cli import auditing
from dbcrate.cli.options import in_job, load_config
from dbcrate.cli.output import print_error, print_json
from dbcrate.errors import DbcrateError, StorageError
from dbcrate.operations.preflight import PARTIAL_EXIT


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``prune`` to the subparsers ``sub``."""
    p = sub.add_parser("prune", parents=[common],
                       help="apply retention, saying why each backup is kept")
    p.add_argument("job", nargs="?", metavar="JOB", help="only this job (default: all)")
    p.add_argument("--target", metavar="T", help="only this target")
    p.add_argument("--dry-run", action="store_true", help="decide and report, delete nothing")
    p.add_argument("--json", action="store_true", help="print the decisions as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Apply retention to the named job (all jobs by default), saying why each is kept."""
    cfg = load_config(args)
    jobs = [cfg.job(args.job)] if args.job else list(cfg.jobs.values())
    exit_code = 0
    out: list[dict[str, Any]] = []
    for job in jobs:
        from dbcrate.operations.prune import run_prune

        reports = run_prune(cfg, job, target=args.target, dry_run=args.dry_run)
        some_ok = any(not r.errors for r in reports)
        for report in reports:
            for backup_id in report.deleted:
                auditing.record(cfg, "retain.delete", job=job.name, trigger="manual",
                                backup_id=backup_id, target=report.target)
            for err in report.errors:
                print_error(in_job(err, f"{job.name} on target {report.target}"))
                exit_code = exit_code or _prune_code(err, some_ok)
            out.append({
                "job": job.name, "target": report.target, "dry_run": args.dry_run,
                "kept": [{"id": d.manifest.id, "reasons": list(d.reasons)}
                         for d in report.decisions if d.keep],
                "deleted": [d.manifest.id for d in report.decisions if not d.keep
                            and (args.dry_run or d.manifest.id in report.deleted)],
                "aborted_uploads": report.aborted_uploads,
                "ignored": [{"key": k, "reason": r} for k, r in report.ignored],
                "wal": report.wal,
            })
            if args.json:
                continue
            verb = "would delete" if args.dry_run else "deleted"
            sys.stdout.write(f"{job.name} on {report.target}:\n")
            for d in report.decisions:
                when = catalog.encode_time(d.manifest.started_at)
                if d.keep:
                    sys.stdout.write(f"  keep    {d.manifest.id}  {when}  "
                                     f"({', '.join(d.reasons)})\n")
                elif args.dry_run or d.manifest.id in report.deleted:
                    sys.stdout.write(f"  {verb:<7} {d.manifest.id}  {when}\n")
            for key, why in report.ignored:
                sys.stdout.write(f"  ignored {key} (not counted, not deleted: {why})\n")
            if report.wal:
                sys.stdout.write(f"  {verb} {len(report.wal)} WAL files before the oldest kept "
                                 f"base ({report.wal[0]} .. {report.wal[-1]})\n")
    if args.json:
        print_json(out)
    return exit_code


def _prune_code(err: DbcrateError, some_ok: bool) -> int:
    """A target that cannot be read or written, while another was pruned, makes the
    run partial (11)."""
    return PARTIAL_EXIT if some_ok and isinstance(err, StorageError) else err.exit_code
