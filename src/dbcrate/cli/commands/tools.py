"""``dbcrate tools fetch MAJOR...`` and ``dbcrate tools list``: the cache of verified
PostgreSQL client tools (see docs/engines/postgres.md). An air-gapped host is pre-seeded
by copying a cache (or only its ``pg/wheels`` directory) from a host that ran ``fetch``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dbcrate.cli.output import print_json


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``tools`` command group to the subparsers ``sub``."""
    p = sub.add_parser("tools", parents=[common],
                       help="verified PostgreSQL client tools cached by dbcrate")
    tsub = p.add_subparsers(dest="tools_command", metavar="SUBCOMMAND",
                            parser_class=type(p))
    tsub.required = True
    cache_help = "cache directory (default: $DBCRATE_CACHE_DIR, else the user cache dir; " \
                 "/var/cache/dbcrate for root)"
    f = tsub.add_parser("fetch", parents=[common],
                        help="download, verify and unpack PostgreSQL MAJOR's tools")
    f.add_argument("majors", nargs="+", type=int, metavar="MAJOR", help="e.g. 17")
    f.add_argument("--cache-dir", metavar="DIR", help=cache_help)
    f.add_argument("--reinstall", action="store_true",
                   help="remove the cached install first and unpack it again")
    f.set_defaults(handler=fetch)
    ls = tsub.add_parser("list", parents=[common], help="what is cached, where from, digests")
    ls.add_argument("--cache-dir", metavar="DIR", help=cache_help)
    ls.add_argument("--json", action="store_true", help="print a JSON array")
    ls.set_defaults(handler=list_)


def _cache(args: argparse.Namespace) -> Path | None:
    return Path(args.cache_dir) if args.cache_dir else None


def fetch(args: argparse.Namespace) -> int:
    """Install each major (a cached, verified install is kept as it is)."""
    from dbcrate.operations import tools  # lazy: pgbin, urllib (start-up)

    cache = _cache(args)
    for major in args.majors:
        inst = tools.fetch(major, cache, reinstall=args.reinstall)
        sys.stdout.write(f"PostgreSQL {inst.version}: {inst.root}\n  from {inst.source or '-'}\n"
                         f"  sha256 {inst.sha256}\n")
    return 0


def list_(args: argparse.Namespace) -> int:
    """Print every cached install; exit 5 if any fails verification."""
    from dbcrate.operations import tools  # lazy: pgbin, urllib (start-up)

    cache = _cache(args)
    rows = tools.describe(cache)
    if args.json:
        print_json(rows)
    elif not rows:
        sys.stdout.write(f"no PostgreSQL tools cached in {tools.cache_dir(cache)}\n")
    for r in [] if args.json else rows:
        state = "verified" if r["verified"] else f"FAILED VERIFICATION: {r['problem']}"
        sys.stdout.write(f"PostgreSQL {r['version']}  {r['path']}  {state}\n"
                         f"  from {r['source'] or '-'}\n  wheel {r['wheel']} sha256 "
                         f"{r['sha256']}{'' if r['known_good'] else ' (not in the shipped list)'}"
                         "\n")
    return 5 if any(not r["verified"] for r in rows) else 0
