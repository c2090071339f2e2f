"""``dbcrate grants JOB``: print the SQL / ACL that creates the least-privilege role the
job's backups need (see docs/engines/*.md, "Least privilege"). Connects to nothing."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dbcrate.cli.options import load_config
from dbcrate.cli.output import print_json


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``grants`` command to the subparsers ``sub``."""
    p = sub.add_parser("grants", parents=[common],
                       help="print the SQL/ACL creating the least-privilege role for a job")
    p.add_argument("job", metavar="JOB")
    p.add_argument("--json", action="store_true",
                   help="print {job, engine, script} as JSON")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the script for ``args.job``. Raises ``ConfigError``/``UsageError``."""
    from dbcrate.operations.probe import job_grants

    cfg = load_config(args)
    job = cfg.job(args.job)
    script = job_grants(job)
    if args.json:
        print_json({"job": job.name, "engine": job.engine, "script": script})
    else:
        sys.stdout.write(script)
    return 0
