"""``dbcrate cat JOB (--latest|--at T|--id ID) [--target T] [--identity F]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dbcrate.cli.commands.restore import explain, keys
from dbcrate.cli.options import add_selection, load_config, selector
from dbcrate.cli.output import stdout_to_devnull
from dbcrate.errors import DbcrateError, OutputError, UsageError


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``cat`` to the subparsers ``sub``."""
    p = sub.add_parser("cat", parents=[common], help="write a backup's native dump to stdout")
    p.add_argument("job", metavar="JOB")
    add_selection(p)
    p.add_argument("--target", metavar="T", help="read from this target")
    p.add_argument("--identity", "-i", metavar="FILE", help="age identity file "
                   "(default: $DBCRATE_IDENTITY_FILE)")
    p.add_argument("--allow-unencrypted", action="store_true",
                   help="accept a backup stored without encryption although the job "
                   "requires encryption (an old plaintext backup, on purpose; loud warning)")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write the native dump to stdout."""
    from dbcrate.operations.restore import run_cat

    cfg = load_config(args)
    job = cfg.job(args.job)
    if sys.stdout.isatty():
        raise UsageError("refusing to write a binary dump to a terminal",
                         hint="redirect stdout to a file or a pipe")
    try:
        run_cat(cfg, job, selector(args), sys.stdout.buffer,
                keys=keys(args, job.encryption_key), target=args.target,
                allow_unencrypted=args.allow_unencrypted)
    except DbcrateError as err:
        explain(err, args)
        err.hint = err.hint + "; discard what was written to stdout"
        raise
    except BrokenPipeError:
        raise
    except OSError as exc:
        stdout_to_devnull()
        raise OutputError(
            f"cannot write the dump to stdout: {exc.strerror or exc}; the output is incomplete",
            hint="discard what was written; free space (or write elsewhere) and run cat again",
        ) from None
    return 0
