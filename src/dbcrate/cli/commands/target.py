"""``dbcrate target check NAME``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dbcrate.cli.options import Parser, load_config
from dbcrate.operations.probe import check_target


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``target`` command group to the subparsers ``sub``."""
    p = sub.add_parser("target", parents=[common], help="storage targets")
    tsub = p.add_subparsers(dest="target_command", metavar="SUBCOMMAND", parser_class=Parser)
    tsub.required = True
    c = tsub.add_parser("check", parents=[common],
                        help="write/read/list/delete probe of a target")
    c.add_argument("name", metavar="NAME")
    c.set_defaults(handler=check)


def check(args: argparse.Namespace) -> int:
    """Probe a target end to end: write, read, list, delete."""
    result = check_target(load_config(args), args.name)
    sys.stdout.write(f"target {result.target} ({result.where}): write, read, list and "
                     f"delete ok in {result.seconds:.2f}s\n")
    return 0
