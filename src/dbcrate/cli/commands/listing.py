"""``dbcrate list [JOB] [--target T] [--json]``."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC
from typing import TYPE_CHECKING, Any

from dbcrate import catalog
from dbcrate.cli.options import in_job, load_config
from dbcrate.cli.output import human, print_error, print_json
from dbcrate.errors import DbcrateError
from dbcrate.operations.preflight import PARTIAL_EXIT

if TYPE_CHECKING:
    from dbcrate.operations.listing import Listed


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``list`` to the subparsers ``sub``."""
    p = sub.add_parser("list", parents=[common], help="list the backups found in storage")
    p.add_argument("job", nargs="?", metavar="JOB", help="only this job")
    p.add_argument("--target", metavar="T", help="only this target")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Print the backups found in storage, oldest first."""
    from dbcrate.operations.listing import count_leftovers, list_backups

    cfg = load_config(args)
    if args.target:
        cfg.target(args.target)
    found, errors = list_backups(cfg, args.job, args.target)
    for name, err in errors.items():
        print_error(in_job(err, f"target {name}"))
    _note_leftovers(count_leftovers(cfg, args.job, args.target))
    if args.json:
        print_json([{**catalog.summary(x.manifest), "target": x.target,
                     "targets": list(x.targets), "authenticated": x.authenticated}
                    for x in found])
    else:
        _print_table(found)
    names = [args.target] if args.target else (
        list(cfg.job(args.job).targets) if args.job else list(cfg.targets))
    if errors and len(errors) >= len(names):  # nothing could be read at all
        return next(iter(errors.values())).exit_code
    return PARTIAL_EXIT if errors else 0


def _note_leftovers(counts: dict[str, int]) -> None:
    """One stderr note per target holding temp objects of interrupted (or running) runs."""
    for name, n in counts.items():
        sys.stderr.write(
            f"dbcrate: note: target {name} holds {n} incomplete upload(s) or temp file(s) of "
            "interrupted or running backups; `dbcrate backup` and `dbcrate prune` remove "
            f"those untouched for {_age()}\n"
        )


def _age() -> str:
    from dbcrate.operations.leftovers import safe_age

    try:
        seconds = int(safe_age().total_seconds())
    except DbcrateError:
        return "an hour"
    return f"{seconds // 3600}h" if seconds and seconds % 3600 == 0 else f"{seconds}s"


def _print_table(found: list[Listed]) -> None:
    if not found:
        sys.stdout.write("no backups found\n")
        return
    rows = [("ID", "JOB", "TARGETS", "STARTED (UTC)", "SIZE", "STAGES", "ENCRYPTION")]
    for x in found:
        m = x.manifest
        rows.append((
            m.id, m.job, ",".join(x.targets) or x.target,
            m.started_at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S"),
            human(m.stored.size), "+".join(m.stages) or "-",
            "UNENCRYPTED" if m.encryption == "none" else m.encryption,
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        sys.stdout.write("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
