"""Entry point: ``dbcrate COMMAND ...``. Exit codes are listed in docs/exit-codes.md."""

from __future__ import annotations

import argparse
import contextlib
import errno
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from dbcrate import __version__, interrupt
from dbcrate.cli.output import print_error, stdout_to_devnull
from dbcrate.errors import DbcrateError, OutputError

Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """The whole command line: global flags, then each command module's parser."""
    from dbcrate.cli import commands
    from dbcrate.cli.options import Parser

    parser = Parser(prog="dbcrate", description="Encrypted, streaming database backups "
                    "to storage you own, restorable from storage alone.")
    parser.add_argument("--version", action="version", version=f"dbcrate {__version__}")
    parser.add_argument("--config", metavar="FILE", help="config file (default: "
                        "$DBCRATE_CONFIG, ./dbcrate.toml, /etc/dbcrate/config.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log what happens (twice for debug detail)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of internal errors")
    # the global flags are also accepted after the command (`dbcrate backup --config F`)
    common = Parser(add_help=False)
    common.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS,
                        help="config file")
    common.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                        help="log what happens (twice for debug detail)")
    common.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show tracebacks of internal errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for module in commands.MODULES:
        module.register(sub, common)
    return parser


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
        if "wal-push" in args_list or "wal-fetch" in args_list:  # once per WAL file
            from dbcrate.cli.walfast import fast_command  # imports only what it needs

            fast = fast_command(args_list)
            if fast is not None:
                return fast[0](fast[1])
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


def run() -> NoReturn:  # pragma: no cover - console script
    """The console script: ``main()``, then a fast exit (``exit_fast``)."""
    exit_fast(main())


def exit_fast(code: int) -> NoReturn:
    """End the process with ``code`` without the interpreter's teardown of every module and
    object (~45 ms after a backup, paid by every command and every ``wal-push``). What
    that teardown would do that matters is done first: stdout and stderr are flushed (a
    failed flush of stdout turns a 0 into 120, as CPython's own exit does), logging is
    shut down and ``atexit`` functions run (``weakref.finalize`` included). With other
    threads still running it is an ordinary ``sys.exit`` (they are waited for as usual).
    Never returns."""
    import atexit
    import threading

    if threading.active_count() > 1:
        sys.exit(code)
    try:
        sys.stdout.flush()
    except (OSError, ValueError):
        code = code or 120
    with contextlib.suppress(OSError, ValueError):
        sys.stderr.flush()
    logging.shutdown()
    atexit._run_exitfuncs()
    with contextlib.suppress(OSError, ValueError):
        sys.stdout.flush()
        sys.stderr.flush()
    os._exit(code)


if __name__ == "__main__":  # pragma: no cover
    run()
