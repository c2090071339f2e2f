"""``dbcrate restore JOB (--latest|--at T|--id ID) [--target T] [--to URL] ...``, and the
key-material and flag checks ``cat`` shares."""

from __future__ import annotations

import argparse
import os
import sys
import time
from typing import TYPE_CHECKING, Any

from dbcrate import catalog
from dbcrate.cli import auditing, pitr_restore
from dbcrate.cli.options import add_progress_flags, add_selection, load_config, progress, selector
from dbcrate.cli.output import print_json
from dbcrate.config import read_secret_file
from dbcrate.config.keys import RESTORE_FLAGS
from dbcrate.errors import DbcrateError, NoMatchingIdentity, UsageError

if TYPE_CHECKING:  # the restore pipeline (engines, codecs, storage) loads when it runs
    from dbcrate.operations.pipeline import KeyMaterial
from dbcrate.redact import redact_url


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``restore`` to the subparsers ``sub``."""
    p = sub.add_parser("restore", parents=[common], help="restore a backup into a database")
    p.add_argument("job", metavar="JOB")
    pitr_restore.add_flags(p, add_selection(p))
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
    add_progress_flags(p)
    p.set_defaults(handler=run)


def identity_path(args: argparse.Namespace) -> str | None:
    return args.identity or os.environ.get("DBCRATE_IDENTITY_FILE") or None


def keys(args: argparse.Namespace, aes_key: bytes | None) -> KeyMaterial:
    """Key material from ``--identity``/``$DBCRATE_IDENTITY_FILE`` and the job's key.
    Raises ``SecretError``/``UsageError``/``InvalidKey`` naming the identity file (and
    the line, never its content)."""
    path = identity_path(args)
    from dbcrate.operations.keys import read_identities
    from dbcrate.operations.pipeline import KeyMaterial

    return KeyMaterial(identities=read_identities(path) if path else (), aes_key=aes_key)


def explain(err: DbcrateError, args: argparse.Namespace) -> None:
    """Name the identity file in a no-matching-identity error; give every error a hint."""
    path = identity_path(args)
    if isinstance(err, NoMatchingIdentity) and path and path not in err.message:
        err.message = f"{err.message} (identity file {path})"
        err.args = (err.message,)
    if not err.hint:
        err.hint = ("read the error above; `dbcrate list JOB` shows the other backups and "
                    "docs/restore-by-hand.md restores with the stock tools")


def check_restore_flags(args: argparse.Namespace, engine: str) -> None:
    """Raise ``UsageError`` naming the engine for a restore flag it does not read."""
    given = {
        "--mode": args.mode is not None, "--path": args.path is not None,
        "--jobs": args.jobs != 1, "--globals": bool(args.globals),
        "--no-owner": bool(args.no_owner), "--no-privileges": bool(args.no_privileges),
        "--terminate-sessions": bool(args.terminate_sessions), "--keep-old": bool(args.keep_old),
    }
    for flag, engines in RESTORE_FLAGS.items():
        if given.get(flag) and engine not in engines:
            raise UsageError(f"{flag} does not apply to {engine} restores "
                             f"(it is a {' and '.join(engines)} flag)",
                             hint=f"see docs/engines/{engine}.md for the {engine} restore flags")


def run(args: argparse.Namespace) -> int:
    """Restore a backup into a database (see ``run_restore``)."""
    from dbcrate.engines import RestoreOptions
    from dbcrate.operations.restore import run_restore

    cfg = load_config(args)
    job = cfg.job(args.job)
    if args.pitr:  # point-in-time recovery of a physical job (cli/pitr_restore.py)
        try:
            return pitr_restore.run(args, cfg, job, keys(args, job.encryption_key))
        except DbcrateError as err:
            auditing.record(cfg, "restore.fail", job=job.name, trigger="manual",
                            error=err.message)
            explain(err, args)
            raise
    if job.options.get("mode") == "physical":
        raise UsageError(f"job {job.name} takes base backups: restore it with --pitr",
                         hint=f"dbcrate restore {job.name} --pitr --to-end --data-dir DIR "
                         "(docs/pitr.md)")
    password = None
    if args.to_password_file:
        password = read_secret_file(args.to_password_file, file=args.to_password_file,
                                    key="--to-password-file")
    elif os.environ.get("DBCRATE_RESTORE_PASSWORD") is not None:
        password = os.environ["DBCRATE_RESTORE_PASSWORD"]
    t0 = time.monotonic()
    options = RestoreOptions(
        clean=args.clean, jobs=args.jobs, no_owner=args.no_owner,
        no_privileges=args.no_privileges, with_globals=args.globals, force=args.force,
        mode=args.mode, path=args.path, terminate_sessions=args.terminate_sessions,
        keep_old=args.keep_old,
    )
    if options.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    check_restore_flags(args, job.engine)
    auditing.record(cfg, "restore.start", job=job.name, trigger="manual")
    try:
        located = run_restore(
            cfg, job, selector(args), keys=keys(args, job.encryption_key), options=options,
            target=args.target, to_url=args.to, to_password=password,
            progress=progress(args), allow_unencrypted=args.allow_unencrypted,
        )
    except DbcrateError as err:
        auditing.record(cfg, "restore.fail", job=job.name, trigger="manual",
                        error=err.message)
        explain(err, args)
        raise
    m = located.manifest
    auditing.record(cfg, "restore.ok", job=job.name, trigger="manual", backup_id=m.id,
                    target=located.target)
    if args.json:
        print_json({"id": m.id, "job": job.name, "target": located.target,
                    "skipped": [{"target": t, "error": e} for t, e in located.skipped],
                    "seconds": round(time.monotonic() - t0, 3)})
        return 0
    sys.stdout.write(
        f"{job.name}: restored backup {m.id} (started {catalog.encode_time(m.started_at)}) "
        f"from {located.target} into {redact_url(args.to or job.url)} "
        f"in {time.monotonic() - t0:.1f}s; "
        f"both digests verified\n"
    )
    return 0
