"""``dbcrate wal-push JOB %p``: PostgreSQL runs it once per WAL segment, so ``cli.main``
calls ``fast_push`` before building the parser and this module imports only what a push
needs (the argparse parser in cli/commands/wal.py documents the same command)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dbcrate.errors import UsageError


def fast_push(argv: list[str]) -> int:
    """``wal-push`` without building the whole parser (PostgreSQL runs it per segment):
    ``JOB PATH [--config F] [-v]``. Raises ``UsageError`` for anything else (the full
    parser's ``--help`` documents it)."""
    ns = argparse.Namespace(config=None, verbose=0)
    rest: list[str] = []
    it = iter(argv)
    for arg in it:
        if arg == "--config":
            ns.config = next(it, None)
        elif arg.startswith("--config="):
            ns.config = arg.split("=", 1)[1]
        elif arg in ("-v", "--verbose"):
            ns.verbose += 1
        elif arg.startswith("-") and arg != "-":
            raise UsageError(f"wal-push: unknown option {arg}",
                             hint="usage: dbcrate wal-push JOB PATH [--config FILE]")
        else:
            rest.append(arg)
    if len(rest) != 2:
        raise UsageError("wal-push takes JOB and PATH",
                         hint="archive_command = 'dbcrate wal-push JOB %p --config FILE'")
    ns.job, ns.path = rest
    if ns.verbose:
        import logging

        logging.basicConfig(level=logging.INFO, format="dbcrate: %(levelname)s: %(message)s",
                            stream=sys.stderr)
    return run_push(ns)


def physical_job(args: argparse.Namespace) -> Any:
    from dbcrate import config

    cfg = config.load(config.find_config(args.config))
    job = cfg.job(args.job)
    if job.engine != "postgres" or job.options.get("mode") != "physical":
        raise UsageError(f"job {job.name} is not a PostgreSQL physical job",
                         hint='set mode = "physical" in the job (docs/pitr.md)')
    return cfg, job


def run_push(args: argparse.Namespace) -> int:
    """Archive ``args.path``; 0 only once every target has it."""
    from dbcrate.operations.pitr.push import push

    cfg, job = physical_job(args)
    push(cfg, job, args.path)
    return 0


