"""What every command module shares: the parser class, the selection and progress flags,
loading the config, and prefixing an error with the job it belongs to."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from dbcrate import catalog, config
from dbcrate.cli.output import TerminalProgress
from dbcrate.errors import DbcrateError, UsageError
from dbcrate.operations.progress import Progress, Silent

if TYPE_CHECKING:
    from _typeshed import SupportsWrite

    # operations.restore (and its engines) load only when a command needs them
    from dbcrate.operations.restore import Selector


class Parser(argparse.ArgumentParser):
    """argparse that raises UsageError instead of exiting, so errors look the same."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message, hint=f"see `{self.prog} --help`")

    def _print_message(self, message: str, file: SupportsWrite[str] | None = None) -> None:
        """Write ``--help``/``--version`` text and flush it. argparse swallows a failed
        write (and the buffered text fails only at exit, unseen), so ``dbcrate --help >
        /dev/full`` exited 0; the ``OSError`` now reaches the CLI's handler (exit 14)."""
        if message:
            out = file or sys.stderr
            out.write(message)
            flush = getattr(out, "flush", None)
            if flush is not None:
                flush()


def add_selection(p: argparse.ArgumentParser, *, at: bool = True) -> Any:
    """``--latest | --at TIME | --id ID`` (exactly one); returns the group."""
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--latest", action="store_true", help="the newest backup")
    if at:
        g.add_argument("--at", "--timestamp", dest="at", metavar="TIME",
                       help="the newest backup started at or before TIME (ISO 8601, UTC if "
                       "no offset), e.g. 2026-11-21T03:00:00Z")
    g.add_argument("--id", dest="backup_id", metavar="ID", help="the backup with this id "
                   "(or a unique prefix of at least 8 characters)")
    return g


def add_progress_flags(p: argparse.ArgumentParser) -> None:
    """``--progress`` / ``--no-progress``."""
    p.add_argument("--progress", dest="progress", action="store_true", default=None,
                   help="show progress (default: when stderr is a terminal)")
    p.add_argument("--no-progress", dest="progress", action="store_false")


def selector(args: argparse.Namespace) -> Selector:
    """The backup ``args`` select. Raises ``UsageError`` for a bad ``--at``."""
    from dbcrate.operations.restore import Selector

    at = None
    if getattr(args, "at", None):
        try:
            at = catalog.parse_time(args.at)
        except ValueError:
            raise UsageError(f"--at {args.at!r} is not an ISO 8601 time",
                             hint="e.g. 2026-11-21T03:00:00Z") from None
    return Selector(latest=args.latest, at=at, backup_id=args.backup_id)


def load_config(args: argparse.Namespace) -> config.Config:
    """The config ``--config`` (or the default places) names. Raises ``ConfigError``."""
    return config.load(config.find_config(args.config))


def progress(args: argparse.Namespace) -> Progress:
    """A progress display on stderr when asked for (default: when stderr is a terminal)."""
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    return TerminalProgress() if show else Silent()


def in_job(err: DbcrateError, where: str) -> DbcrateError:
    """A copy of ``err`` whose message starts with ``where: ``."""
    copy = type(err).__new__(type(err))
    copy.__dict__.update(err.__dict__)
    copy.message = f"{where}: {err.message}"
    return copy
