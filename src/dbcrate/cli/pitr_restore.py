"""``dbcrate restore JOB --pitr (--to-time T | --to-lsn L | --to-end) --data-dir D ...``:
the flags (added to the restore parser) and the handler (docs/pitr.md)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dbcrate import catalog
from dbcrate.cli import auditing
from dbcrate.cli.output import print_json
from dbcrate.errors import UsageError


def add_flags(p: argparse.ArgumentParser, selection: Any) -> None:
    """The PITR flags; ``--pitr`` joins the ``--latest|--at|--id`` group ``selection``."""
    selection.add_argument("--pitr", action="store_true", help="point-in-time recovery of a "
                           'mode = "physical" job into a new data directory (docs/pitr.md)')
    g = p.add_argument_group("point-in-time recovery (--pitr)")
    g.add_argument("--to-time", metavar="T", help="replay to this time (ISO 8601; UTC "
                   "when it has no offset)")
    g.add_argument("--to-lsn", metavar="L", help="replay to this WAL location (e.g. 0/3000060)")
    g.add_argument("--to-end", action="store_true", help="replay all archived WAL")
    g.add_argument("--data-dir", metavar="D", help="the new data directory (must not exist "
                   "or be empty)")
    g.add_argument("--base", metavar="ID", help="this base backup (default: the newest whose "
                   "stop precedes the target)")
    g.add_argument("--timeline", default="latest", metavar="latest|current|N",
                   help="recovery_target_timeline (default: latest)")
    g.add_argument("--target-action", default="promote", choices=("promote", "pause",
                   "shutdown"), help="what the server does at the target (default: promote)")
    g.add_argument("--run-as", metavar="USER", help="when root: the server's OS user "
                   "(default: the owner of D's parent)")
    g.add_argument("--resume-archiving", action="store_true", help="the copy replaces the "
                   "job's server: keep archive_mode so it archives its new timeline")
    g.add_argument("--keep-running", action="store_true", help="leave the server running "
                   "(on 127.0.0.1:--port)")
    g.add_argument("--port", type=int, metavar="P", help="with --keep-running: its TCP port")


def run(args: argparse.Namespace, cfg: Any, job: Any, key_material: Any) -> int:
    """Restore ``job`` to a point in time. Exit codes: docs/exit-codes.md."""
    from dbcrate.operations.pitr.restore import PitrRequest, run_pitr

    targets = [bool(args.to_time), bool(args.to_lsn), bool(args.to_end)]
    if sum(targets) != 1:
        raise UsageError("--pitr needs exactly one of --to-time, --to-lsn, --to-end")
    if not args.data_dir:
        raise UsageError("--pitr needs --data-dir D (a new or empty directory)")
    if args.keep_running and not args.port:
        raise UsageError("--keep-running needs --port P")
    if job.engine != "postgres" or job.options.get("mode") != "physical":
        raise UsageError(f"job {job.name} is not a PostgreSQL physical job",
                         hint='--pitr restores mode = "physical" jobs (docs/pitr.md)')
    when = None
    if args.to_time:
        try:
            when = catalog.parse_time(args.to_time)
        except ValueError:
            raise UsageError(f"--to-time {args.to_time!r} is not an ISO 8601 time") from None
    req = PitrRequest(
        data_dir=Path(args.data_dir).absolute(), to_time=when, to_lsn=args.to_lsn,
        to_end=args.to_end, base_id=args.base, timeline=args.timeline,
        action=args.target_action, run_as=args.run_as,
        resume_archiving=args.resume_archiving, keep_running=args.keep_running,
        port=args.port, target=args.target)
    auditing.record(cfg, "restore.start", job=job.name, trigger="manual")
    result = run_pitr(cfg, job, req, key_material)
    auditing.record(cfg, "restore.ok", job=job.name, trigger="manual",
                    backup_id=result.base_id, target=result.target)
    if args.json:
        print_json({"job": job.name, **result.json()})
    else:
        sys.stdout.write(
            f"{job.name}: restored base {result.base_id} into {req.data_dir} and replayed WAL"
            f" ({result.stopped_at or 'to the end of the archive'}); last commit "
            f"{result.last_commit or 'unknown'}, timeline {result.timeline or '?'}, "
            f"{result.seconds:.1f}s\n")
    return 0
