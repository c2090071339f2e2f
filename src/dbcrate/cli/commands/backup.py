"""``dbcrate backup [JOB...] [--json]``."""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING, Any

from dbcrate import catalog
from dbcrate.cli import auditing
from dbcrate.cli.options import add_progress_flags, in_job, load_config, progress
from dbcrate.cli.output import human, print_error, print_json
from dbcrate.errors import DbcrateError, UsageError
from dbcrate.operations.preflight import naming, run_exit_code

if TYPE_CHECKING:  # the backup pipeline (engines, codecs, storage) loads when it runs
    from dbcrate.operations.backup import BackupResult


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``backup`` to the subparsers ``sub``."""
    p = sub.add_parser("backup", parents=[common], help="run backup jobs now")
    p.add_argument("jobs", nargs="*", metavar="JOB", help="jobs to run (default: all)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    add_progress_flags(p)
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Run the named jobs (all by default); exit 0 only if every job reached every target."""
    from dbcrate.operations.backup import run_backup

    cfg = load_config(args)
    names = args.jobs or list(cfg.jobs)
    if not names:
        raise UsageError(f"no jobs defined in {cfg.source}", hint="add a [[backup.jobs]] table")
    jobs = [cfg.job(n) for n in names]  # validate every name before running any job
    outcomes: list[tuple[str, int]] = []
    report: list[dict[str, Any]] = []
    for job in jobs:
        t0 = time.monotonic()
        auditing.record(cfg, "backup.start", job=job.name, trigger="manual")
        run_id = auditing.run_started(cfg, job.name)
        try:
            result = run_backup(cfg, job, progress(args))
        except DbcrateError as err:
            auditing.record(cfg, "backup.fail", job=job.name, trigger="manual",
                            error=err.message)
            auditing.run_finished(cfg, run_id, error=err)
            print_error(in_job(err, job.name))
            report.append({"job": job.name, "ok": False, "outcome": "failed",
                           "error": err.message, "targets": [], "failures": {},
                           "results": []})
            outcomes.append(("failed", err.exit_code))
            continue
        for target, failure in result.failures.items():
            print_error(in_job(failure, f"{job.name} on target {target}"))
        first = next(iter(result.failures.values()), None)
        outcomes.append((result.outcome, first.exit_code if first else 0))
        auditing.backup_done(cfg, job.name, result)
        auditing.run_finished(cfg, run_id, result)
        report.append(_result_json(result))
        if not args.json and result.manifest is not None:
            m = result.manifest
            where = ", ".join(c.target for c in result.copies)
            ratio = m.stored.size / m.plaintext.size if m.plaintext.size else 1.0
            sys.stdout.write(
                f"{job.name}: backup {m.id} stored on {where}: {m.data_key}\n"
                f"  {human(m.plaintext.size)} dumped, {human(m.stored.size)} stored "
                f"({ratio:.0%}), {' -> '.join(m.stages) or 'no codecs'}"
                f"{', UNENCRYPTED' if m.encryption == 'none' else ''}, "
                f"{time.monotonic() - t0:.1f}s\n"
            )
    if args.json:
        print_json(report)
    return run_exit_code(outcomes)


def _result_json(result: BackupResult) -> dict[str, Any]:
    out: dict[str, Any] = {"job": result.job, "ok": result.ok}
    if result.manifest is not None:
        out.update(catalog.summary(result.manifest))
    out["targets"] = [c.target for c in result.copies]
    out["failures"] = {t: naming(t, e) for t, e in result.failures.items()}
    out["outcome"] = result.outcome
    out["results"] = [r.json() for r in result.results]
    return out
