"""``dbcrate wal-push JOB %p`` and ``dbcrate wal-fetch JOB %f %p``: PostgreSQL runs them
once per WAL file, so ``cli.main`` asks :func:`fast_command` before building the parser,
and this module imports only what a push or a fetch needs (the argparse parsers in
cli/commands/wal.py document the same commands and handle anything irregular: ``--help``,
an unknown option, a missing argument).

wal-fetch exits 0, 9 when the file is not archived, and 255 (> 125, so PostgreSQL aborts
recovery instead of taking it for the end of the archive) for anything else.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from dbcrate.errors import DbcrateError, UsageError

#: wal-fetch's exit code for every failure but "not archived"
FETCH_FAILED = 255

#: options taking a value, per command (the global ``--config`` everywhere)
_VALUED = {"wal-push": {"--config": "config"},
           "wal-fetch": {"--config": "config", "--identity": "identity", "-i": "identity",
                         "--target": "target"}}
_POSITIONAL = {"wal-push": ("job", "path"), "wal-fetch": ("job", "name", "path")}


def fast_command(argv: list[str]) -> tuple[Callable[[argparse.Namespace], int],
                                           argparse.Namespace] | None:
    """``(handler, args)`` for a plain ``wal-push``/``wal-fetch`` command line (global
    ``--config F``, ``-v``, ``--debug`` before or after the command); None for anything
    else, which the full parser then handles. Never raises."""
    ns = argparse.Namespace(config=None, verbose=0, debug=False, identity=None, target=None)
    rest: list[str] = []
    command: str | None = None
    it = iter(argv)
    for arg in it:
        valued = _VALUED[command] if command else {"--config": "config"}
        name, eq, value = arg.partition("=")
        if arg in ("-v", "--verbose"):
            ns.verbose += 1
        elif arg == "--debug":
            ns.debug = True
        elif name in valued and name.startswith("--") and eq:
            setattr(ns, valued[name], value)
        elif arg in valued:
            given = next(it, None)
            if given is None:
                return None
            setattr(ns, valued[arg], given)
        elif arg.startswith("-") and arg != "-":
            return None  # --help, -vv, an unknown option: the full parser
        elif command is None:
            if arg not in _POSITIONAL:
                return None
            command = arg
        else:
            rest.append(arg)
    if command is None or len(rest) != len(_POSITIONAL[command]):
        return None
    for key, value in zip(_POSITIONAL[command], rest, strict=True):
        setattr(ns, key, value)
    ns.command = command
    if ns.verbose:
        import logging

        level = logging.INFO if ns.verbose == 1 else logging.DEBUG
        logging.basicConfig(level=level, format="dbcrate: %(levelname)s: %(message)s",
                            stream=sys.stderr)
    return (run_push if command == "wal-push" else run_fetch), ns


def physical_job(args: argparse.Namespace) -> Any:
    """``(config, job)`` of ``args.job``. Raises ``ConfigError``, or ``UsageError`` for a
    job that is not a PostgreSQL physical job."""
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


def run_fetch(args: argparse.Namespace) -> int:
    """Fetch ``args.name`` into ``args.path``: 0, 9 (not archived) or 255."""
    try:
        from dbcrate.operations.pitr.fetch import fetch_to
        from dbcrate.storage import open_target

        cfg, job = physical_job(args)
        names = [args.target] if args.target else list(job.targets)
        storages = {n: open_target(cfg.target(n)) for n in names}
        fetch_to(storages, job, args.name, Path(args.path), _keys(args, job.encryption_key))
        return 0
    except DbcrateError as err:
        if err.exit_code == 9:
            return 9  # quietly: PostgreSQL asks for files past the end as a matter of course
        from dbcrate.cli.output import print_error

        print_error(err)
        return FETCH_FAILED
    except KeyboardInterrupt:
        raise
    except Exception as exc:  # a bug must not look like the end of the archive either
        sys.stderr.write(f"dbcrate: internal error: {type(exc).__name__}: {exc}\n")
        return FETCH_FAILED


def _keys(args: argparse.Namespace, aes_key: bytes | None) -> Any:
    """Key material from ``--identity``/``$DBCRATE_IDENTITY_FILE`` and the job's key
    (as ``restore`` reads them). Raises ``SecretError``/``InvalidKey`` naming the file."""
    import os

    from dbcrate.operations.keys import read_identities
    from dbcrate.operations.pipeline import KeyMaterial

    path = args.identity or os.environ.get("DBCRATE_IDENTITY_FILE") or None
    return KeyMaterial(identities=read_identities(path) if path else (), aes_key=aes_key)
