"""Entry point: ``dbcrate COMMAND ...``. Exit codes are listed in docs/exit-codes.md."""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence

from dbcrate import __version__, interrupt
from dbcrate.cli import commands, grants, targets, tools
from dbcrate.cli.output import print_error, stdout_to_devnull
from dbcrate.errors import DbcrateError, OutputError, UsageError

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so errors look the same."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"see `{self.prog} --help`")


def _selection(p: argparse.ArgumentParser, *, at: bool = True) -> None:
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--latest", action="store_true", help="the newest backup")
    if at:
        g.add_argument("--at", "--timestamp", dest="at", metavar="TIME",
                       help="the newest backup started at or before TIME (ISO 8601, UTC if "
                       "no offset), e.g. 2026-11-21T03:00:00Z")
    g.add_argument("--id", dest="backup_id", metavar="ID", help="the backup with this id "
                   "(or a unique prefix of at least 8 characters)")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dbcrate", description="Encrypted, streaming database backups "
                     "to storage you own, restorable from storage alone.")
    parser.add_argument("--version", action="version", version=f"dbcrate {__version__}")
    parser.add_argument("--config", metavar="FILE", help="config file (default: "
                        "$DBCRATE_CONFIG, ./dbcrate.toml, /etc/dbcrate/config.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what happens (twice for debug detail)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    # the global flags are also accepted after the command (`dbcrate backup --config F`)
    common = _Parser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="config file")
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log what happens (twice for debug detail)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    add = functools.partial(sub.add_parser, parents=[common])

    p = add("keygen", help="create an age identity and print its recipient")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the identity here (mode 0600; never overwritten)")
    p.add_argument("--signing", action="store_true",
                   help="create an Ed25519 manifest signing key instead (OpenSSH format, "
                   "needs -o) and print its `ssh-ed25519 ...` line for trusted_signers")
    p.set_defaults(handler=commands.keygen)

    p = add("backup", help="run backup jobs now")
    p.add_argument("jobs", nargs="*", metavar="JOB", help="jobs to run (default: all)")
    p.add_argument("--json", action="store_true", help="print results as JSON")
    _progress_flags(p)
    p.set_defaults(handler=commands.backup)

    p = add("list", help="list the backups found in storage")
    p.add_argument("job", nargs="?", metavar="JOB", help="only this job")
    p.add_argument("--target", metavar="T", help="only this target")
    p.add_argument("--json", action="store_true", help="print a JSON array")
    p.set_defaults(handler=commands.list_)

    p = add("restore", help="restore a backup into a database")
    p.add_argument("job", metavar="JOB")
    _selection(p)
    p.add_argument("--target", metavar="T", help="read from this target (default: the "
                   "job's targets in order)")
    p.add_argument("--to", metavar="URL", help="restore into this database (created if it "
                   "does not exist; default: the job's own database, in place)")
    p.add_argument("--to-password-file", metavar="FILE", help="password for --to (default: "
                   "$DBCRATE_RESTORE_PASSWORD, else the job's password)")
    p.add_argument("--identity", "-i", metavar="FILE", help="age identity file "
                   "(default: $DBCRATE_IDENTITY_FILE)")
    p.add_argument("--clean", action="store_true", help="allow restoring over a non-empty "
                   "database (postgres, mysql: into a new copy, swapped in when complete)")
    p.add_argument("--terminate-sessions", action="store_true", help="postgres --clean: "
                   "terminate other sessions on the target for the swap instead of refusing")
    p.add_argument("--keep-old", action="store_true", help="postgres, mysql --clean: keep "
                   "the replaced database as {db}_dbcrate_old_{id} instead of dropping it")
    p.add_argument("--jobs", "-j", type=int, default=1, metavar="N",
                   help="parallel restore workers (PostgreSQL: pg_restore -j N; the decrypted "
                   "dump is staged in a private temp file, removed afterwards)")
    p.add_argument("--no-owner", action="store_true",
                   help="do not restore object ownership")
    p.add_argument("--no-privileges", action="store_true",
                   help="do not restore privileges (GRANT/REVOKE)")
    p.add_argument("--globals", action="store_true",
                   help="also restore the backup's cluster-wide objects (roles, tablespaces), "
                   "first")
    p.add_argument("--force", action="store_true",
                   help="override overridable safety checks (e.g. restoring into an older "
                   "server major)")
    p.add_argument("--mode", metavar="MODE",
                   help="engine-specific restore mode (redis: copy, datadir, inplace)")
    p.add_argument("--path", metavar="DIR",
                   help="engine-specific restore path (redis datadir mode)")
    p.add_argument("--allow-unencrypted", action="store_true",
                   help="accept a backup stored without encryption although the job "
                   "requires encryption (an old plaintext backup, on purpose; loud warning)")
    p.add_argument("--json", action="store_true", help="print the id, the target read "
                   "and the copies skipped as JSON")
    _progress_flags(p)
    p.set_defaults(handler=commands.restore)

    p = add("cat", help="write a backup's native dump to stdout")
    p.add_argument("job", metavar="JOB")
    _selection(p)
    p.add_argument("--target", metavar="T", help="read from this target")
    p.add_argument("--identity", "-i", metavar="FILE", help="age identity file "
                   "(default: $DBCRATE_IDENTITY_FILE)")
    p.add_argument("--allow-unencrypted", action="store_true",
                   help="accept a backup stored without encryption although the job "
                   "requires encryption (an old plaintext backup, on purpose; loud warning)")
    p.set_defaults(handler=commands.cat)

    p = add("prune", help="apply retention, saying why each backup is kept")
    p.add_argument("job", nargs="?", metavar="JOB", help="only this job (default: all)")
    p.add_argument("--target", metavar="T", help="only this target")
    p.add_argument("--dry-run", action="store_true", help="decide and report, delete nothing")
    p.add_argument("--json", action="store_true", help="print the decisions as JSON")
    p.set_defaults(handler=commands.prune)

    p = add("target", help="storage targets")
    tsub = p.add_subparsers(dest="target_command", metavar="SUBCOMMAND", parser_class=_Parser)
    tsub.required = True
    c = tsub.add_parser("check", parents=[common],
                        help="write/read/list/delete probe of a target")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--json", action="store_true", help="print the steps, versioning, "
                   "object lock and notes as JSON")
    c.set_defaults(handler=targets.target_check)

    tools.register(sub, common)
    grants.register(sub, common)
    return parser


def _progress_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show progress (default: when stderr is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns (and, as a console script, exits with) the exit code.

    SIGINT, SIGTERM and SIGHUP end any command like Ctrl-C (see ``dbcrate.interrupt``):
    child tools are stopped, the clean-up runs, one line says what was removed, and the
    exit code is 130 (143 for SIGTERM)."""
    restore_handlers = interrupt.install()
    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        return _run(args_list)
    except KeyboardInterrupt as exc:  # a signal that arrived outside the command itself
        return _interrupted(exc)
    finally:
        restore_handlers()


def _run(args_list: list[str]) -> int:
    debug = "--debug" in args_list or bool(os.environ.get("DBCRATE_DEBUG"))
    try:
        args = build_parser().parse_args(args_list)
        _setup_logging(args.verbose)
        interrupt.doing(_activity(args))
        handler: Handler = args.handler
        return handler(args)
    except DbcrateError as err:
        stopped = interrupt.interrupted()
        if stopped is not None:  # a tool died of the same signal before we saw it
            return _interrupted(stopped)
        print_error(err)
        return err.exit_code
    except KeyboardInterrupt as exc:
        return _interrupted(exc)
    except BrokenPipeError:
        return 141
    except OSError as exc:
        if exc.errno not in _OUTPUT_ERRNOS:
            return _internal(exc, debug)
        stdout_to_devnull()
        out_err = OutputError(f"cannot write the output: {exc.strerror or exc}")
        print_error(out_err)
        return out_err.exit_code
    except Exception as exc:
        return _internal(exc, debug)


#: errors of a write to stdout or a file that are the machine's state, not a bug
_OUTPUT_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EIO})


def _internal(exc: Exception, debug: bool) -> int:
    """Report a bug (re-raised with ``--debug``); exit code 1."""
    if debug:
        raise exc
    sys.stderr.write(
        f"dbcrate: internal error: {type(exc).__name__}: {exc}\n"
        "hint: this is a bug; run again with --debug and report the traceback\n"
    )
    return 1


def _interrupted(exc: KeyboardInterrupt) -> int:
    """Print the one line about an interruption; its exit code (130, or 143 for SIGTERM)."""
    if not isinstance(exc, interrupt.Interrupted):  # KeyboardInterrupt before install()
        exc = interrupt.interrupted() or interrupt.Interrupted(signal.SIGINT)
    line = interrupt.summary(exc)
    with contextlib.suppress(OSError):
        sys.stderr.write(f"dbcrate: {line}\n")
        sys.stderr.flush()
    return exc.exit_code


def _activity(args: argparse.Namespace) -> str:
    """``restore of orders`` from the parsed command line (operations may say more)."""
    command = str(getattr(args, "command", "") or "")
    jobs = getattr(args, "jobs", None)
    job = getattr(args, "job", None) or (jobs[0] if isinstance(jobs, list) and len(jobs) == 1
                                         else None)
    return f"{command} of {job}" if command and job else command


def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    logging.basicConfig(level=level, format="dbcrate: %(levelname)s: %(message)s",
                        stream=sys.stderr)


def run() -> None:  # pragma: no cover - console script
    sys.exit(main())


if __name__ == "__main__":  # pragma: no cover
    run()
