"""``dbcrate wal-push JOB %p`` (archive_command) and ``dbcrate wal-fetch JOB %f %p``
(restore_command for standbys and manual recovery); docs/pitr.md.

wal-fetch exits 0, 9 when the file is not archived, and 255 (> 125, so PostgreSQL aborts
recovery instead of taking it for the end of the archive) for anything else.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dbcrate.cli.walfast import physical_job, run_fetch, run_push


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``wal-push`` and ``wal-fetch`` to the subparsers ``sub``."""
    p = sub.add_parser("wal-push", parents=[common], help="archive one WAL file "
                       "(PostgreSQL's archive_command: dbcrate wal-push JOB %%p)")
    p.add_argument("job", metavar="JOB")
    p.add_argument("path", metavar="PATH", help="the WAL file (%%p)")
    p.set_defaults(handler=run_push)
    f = sub.add_parser("wal-fetch", parents=[common], help="fetch one archived WAL file "
                       "(restore_command: dbcrate wal-fetch JOB %%f %%p --identity F)")
    f.add_argument("job", metavar="JOB")
    f.add_argument("name", metavar="NAME", help="the WAL file name (%%f)")
    f.add_argument("path", metavar="PATH", help="where to write it (%%p)")
    f.add_argument("--identity", "-i", metavar="FILE", help="age identity file "
                   "(default: $DBCRATE_IDENTITY_FILE); readable by the server's user")
    f.add_argument("--target", metavar="T", help="read from this target only")
    f.set_defaults(handler=run_fetch)
    w = sub.add_parser("wal", parents=[common], help="check and verify a job's WAL archive")
    wsub = w.add_subparsers(dest="wal_command", metavar="SUBCOMMAND")
    wsub.required = True
    v = wsub.add_parser("verify", parents=[common], help="gaps, missing history files, "
                        "conflicting copies, each base's restorable window (exit 13: a gap)")
    v.add_argument("job", metavar="JOB")
    v.add_argument("--target", metavar="T", help="only this target")
    v.add_argument("--read", action="store_true", help="also decrypt every object and "
                   "check its digest and page header (needs --identity for age)")
    v.add_argument("--identity", "-i", metavar="FILE", help="age identity file (--read)")
    v.add_argument("--json", action="store_true", help="print the reports as JSON")
    v.set_defaults(handler=run_verify)
    c = wsub.add_parser("check", parents=[common], help="check the server archives into "
                        "this job: settings, REPLICATION, a switched segment arrives")
    c.add_argument("job", metavar="JOB")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.set_defaults(handler=run_check)


#: ``wal verify``'s exit code when the archive has a gap (docs/exit-codes.md)
GAP_EXIT = 13


def run_verify(args: argparse.Namespace) -> int:
    """Verify the archive; 0 clean, 13 a gap or missing history, 5 conflicts or damage,
    4 a target that cannot be read."""
    from dbcrate.cli.commands.restore import keys as key_material
    from dbcrate.cli.output import print_json
    from dbcrate.operations.pitr.check import current_segment
    from dbcrate.operations.pitr.verify import verify_wal

    cfg, job = physical_job(args)
    keys = key_material(args, job.encryption_key) if args.read else None
    current = current_segment(job)
    reports = verify_wal(cfg, job, target=args.target, read=args.read, keys=keys,
                         current=current)
    if args.json:
        print_json([r.json() for r in reports])
    else:
        for r in reports:
            state = "ok" if r.ok else "PROBLEMS"
            sys.stdout.write(f"{job.name} on {r.target}: {state}; {r.segments} segments "
                             f"{r.first or '-'} .. {r.last or '-'}\n")
            for what, items in (("gap", r.gaps), ("missing history", r.missing_history),
                                ("conflicting copies", r.conflicts)):
                for item in items:
                    sys.stdout.write(f"  {what}: {item}\n")
            for d in r.damaged:
                sys.stdout.write(f"  damaged: {d['key']}: {d['error']}\n")
            for b in r.bases:
                window = (f"restorable to {b['to_segment']} ({b['to_time'] or '?'})"
                          if b["restorable"] else "NOT restorable (a gap before its stop)")
                sys.stdout.write(f"  base {b['id']} (stop {b['stop_lsn']}): {window}\n")
            if r.error:
                sys.stdout.write(f"  error: {r.error}\n")
    if any(r.gaps or r.missing_history for r in reports):
        return GAP_EXIT
    if any(r.conflicts or r.damaged for r in reports):
        return 5
    return 4 if any(r.error for r in reports) else 0


def run_check(args: argparse.Namespace) -> int:
    """Check the server's archiving into the job; 0 when a switched segment arrived."""
    from dbcrate.cli.output import print_json
    from dbcrate.operations.pitr.check import check_archiving

    cfg, job = physical_job(args)
    report = check_archiving(cfg, job)
    if args.json:
        print_json({"job": job.name, "ok": report.ok, "problems": report.problems,
                    "switched": report.switched, "archive_command": report.archive_command})
    else:
        for p in report.problems:
            sys.stdout.write(f"problem: {p}\n")
        if report.switched:
            sys.stdout.write(f"{job.name}: segment {report.switched} switched and archived "
                             "on every target\n")
        sys.stdout.write(f"archive_command = '{report.archive_command}'\n")
    return 0 if report.ok else 2
