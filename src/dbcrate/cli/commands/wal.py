"""``dbcrate wal-push JOB %p`` (archive_command) and ``dbcrate wal-fetch JOB %f %p``
(restore_command for standbys and manual recovery); docs/pitr.md.

wal-fetch exits 0, 9 when the file is not archived, and 255 (> 125, so PostgreSQL aborts
recovery instead of taking it for the end of the archive) for anything else.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dbcrate.cli.output import print_error
from dbcrate.cli.walpush import physical_job, run_push
from dbcrate.errors import DbcrateError

#: wal-fetch's exit code for every failure but "not archived"
FETCH_FAILED = 255


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


def run_fetch(args: argparse.Namespace) -> int:
    """Fetch ``args.name`` into ``args.path``: 0, 9 (not archived) or 255."""
    try:
        from dbcrate.cli.commands.restore import keys as key_material
        from dbcrate.operations.pitr.fetch import fetch_to
        from dbcrate.storage import open_target

        cfg, job = physical_job(args)
        names = [args.target] if args.target else list(job.targets)
        storages = {n: open_target(cfg.target(n)) for n in names}
        fetch_to(storages, job, args.name, Path(args.path),
                 key_material(args, job.encryption_key))
        return 0
    except DbcrateError as err:
        if err.exit_code == 9:
            return 9  # quietly: PostgreSQL asks for files past the end as a matter of course
        print_error(err)
        return FETCH_FAILED
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a bug must not look like the end of the archive either
        sys.stderr.write(f"dbcrate: internal error: {type(exc).__name__}: {exc}\n")
        return FETCH_FAILED
