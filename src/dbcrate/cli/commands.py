"""One function per command: read arguments, call operations, print results."""

from __future__ import annotations

import argparse
import os
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbcrate import catalog, config
from dbcrate.cli.output import TerminalProgress, human, print_error, print_json, stdout_to_devnull
from dbcrate.config_keys import RESTORE_FLAGS
from dbcrate.engines import RestoreOptions
from dbcrate.errors import DbcrateError, InvalidKey, NoMatchingIdentity, OutputError, UsageError
from dbcrate.operations.backup import BackupResult, run_backup
from dbcrate.operations.listing import Listed, count_leftovers, list_backups
from dbcrate.operations.pipeline import KeyMaterial
from dbcrate.operations.preflight import PARTIAL_EXIT, naming, run_exit_code
from dbcrate.operations.progress import Progress, Silent
from dbcrate.operations.restore import Selector, run_cat, run_restore
from dbcrate.redact import redact_url
from dbcrate.secrets import read_secret_file


def _config(args: argparse.Namespace) -> config.Config:
    return config.load(config.find_config(args.config))


def _progress(args: argparse.Namespace) -> Progress:
    show = args.progress if args.progress is not None else sys.stderr.isatty()
    return TerminalProgress() if show else Silent()


# -- keygen ---------------------------------------------------------------------------------


def keygen(args: argparse.Namespace) -> int:
    """Write a new age identity (0600, never overwriting) and print its recipient."""
    from dbcrate.codecs.age import generate_identity

    if args.signing:
        return _keygen_signing(args)

    identity, recipient = generate_identity()
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    text = f"# created: {created}\n# public key: {recipient}\n{identity}\n"
    if args.output is None:
        sys.stderr.write(f"Public key: {recipient}\n")
        sys.stdout.write(text)
        return 0
    path = Path(args.output)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{path} already exists; refusing to overwrite an identity",
                         hint="choose another -o FILE or move the old one away") from None
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    sys.stderr.write(f"wrote identity to {path} (keep it secret and keep a copy offline)\n")
    sys.stdout.write(recipient + "\n")
    return 0


def _keygen_signing(args: argparse.Namespace) -> int:
    """Write a new Ed25519 signing key (OpenSSH format, 0600) and print its public line."""
    from dbcrate import signing

    if args.output is None:
        raise UsageError("keygen --signing needs -o FILE",
                         hint="the private key is written only to a file (mode 0600)")
    pem, public = signing.generate()
    try:
        signing.write_private(args.output, pem)
    except FileExistsError:
        raise UsageError(f"{args.output} already exists; refusing to overwrite a key",
                         hint="choose another -o FILE or move the old one away") from None
    except OSError as exc:
        raise UsageError(f"cannot create {args.output}: {exc.strerror}") from None
    sys.stderr.write(f"wrote signing key to {args.output}: set signing_key_file to it on "
                     "the backing-up host, and put this line in trusted_signers where "
                     "backups are restored\n")
    sys.stdout.write(public.line() + "\n")
    return 0


# -- backup ---------------------------------------------------------------------------------


def backup(args: argparse.Namespace) -> int:
    """Run the named jobs (all by default); exit 0 only if every job reached every target."""
    cfg = _config(args)
    names = args.jobs or list(cfg.jobs)
    if not names:
        raise UsageError(f"no jobs defined in {cfg.source}", hint="add a [[backup.jobs]] table")
    jobs = [cfg.job(n) for n in names]  # validate every name before running any job
    outcomes: list[tuple[str, int]] = []
    report: list[dict[str, Any]] = []
    for job in jobs:
        t0 = time.monotonic()
        try:
            result = run_backup(cfg, job, _progress(args))
        except DbcrateError as err:
            print_error(_in_job(err, job.name))
            report.append({"job": job.name, "ok": False, "outcome": "failed",
                           "error": err.message, "targets": [], "failures": {},
                           "results": []})
            outcomes.append(("failed", err.exit_code))
            continue
        for target, failure in result.failures.items():
            print_error(_in_job(failure, f"{job.name} on target {target}"))
        first = next(iter(result.failures.values()), None)
        outcomes.append((result.outcome, first.exit_code if first else 0))
        report.append(_result_json(result))
        if not args.json and result.manifest is not None:
            m = result.manifest
            where = ", ".join(c.target for c in result.copies)
            ratio = m.stored.size / m.plaintext.size if m.plaintext.size else 1.0
            sys.stdout.write(
                f"{job.name}: backup {m.id} stored on {where}: {m.data_key}\n"
                f"  {human(m.plaintext.size)} dumped, {human(m.stored.size)} stored "
                f"({ratio:.0%}), {' -> '.join(m.stages) or 'no codecs'}"
                f"{', UNENCRYPTED' if m.encryption == 'none' else ''}, "
                f"{time.monotonic() - t0:.1f}s\n"
            )
    if args.json:
        print_json(report)
    return run_exit_code(outcomes)


def _in_job(err: DbcrateError, where: str) -> DbcrateError:
    copy = type(err).__new__(type(err))
    copy.__dict__.update(err.__dict__)
    copy.message = f"{where}: {err.message}"
    return copy


def _result_json(result: BackupResult) -> dict[str, Any]:
    out: dict[str, Any] = {"job": result.job, "ok": result.ok}
    if result.manifest is not None:
        out.update(_manifest_json(result.manifest))
    out["targets"] = [c.target for c in result.copies]
    out["failures"] = {t: naming(t, e) for t, e in result.failures.items()}
    out["outcome"] = result.outcome
    out["results"] = [r.json() for r in result.results]
    return out


# -- list -------------------------------------------------------------------------------------


def _manifest_json(m: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "id": m.id, "job": m.job, "engine": m.engine, "key": m.data_key,
        "started_at": catalog.encode_time(m.started_at),
        "finished_at": catalog.encode_time(m.finished_at),
        "size": m.stored.size, "sha256": m.stored.sha256,
        "plaintext_size": m.plaintext.size, "plaintext_sha256": m.plaintext.sha256,
        "stages": list(m.stages), "encryption": m.encryption,
        "encrypted": m.encryption != "none", "recipients": list(m.recipients),
        "server_version": m.server_version, "tool": m.tool, "tool_version": m.tool_version,
        "status": m.status, "format": m.format,
    }
    return doc


def list_(args: argparse.Namespace) -> int:
    """Print the backups found in storage, oldest first."""
    cfg = _config(args)
    if args.target:
        cfg.target(args.target)
    found, errors = list_backups(cfg, args.job, args.target)
    for name, err in errors.items():
        print_error(_in_job(err, f"target {name}"))
    _note_leftovers(count_leftovers(cfg, args.job, args.target))
    if args.json:
        print_json([{**_manifest_json(x.manifest), "target": x.target,
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


# -- restore / cat ------------------------------------------------------------------------------


def _selector(args: argparse.Namespace) -> Selector:
    at = None
    if getattr(args, "at", None):
        try:
            at = catalog.parse_time(args.at)
        except ValueError:
            raise UsageError(f"--at {args.at!r} is not an ISO 8601 time",
                             hint="e.g. 2026-11-21T03:00:00Z") from None
    return Selector(latest=args.latest, at=at, backup_id=args.backup_id)


def _identity_path(args: argparse.Namespace) -> str | None:
    return args.identity or os.environ.get("DBCRATE_IDENTITY_FILE") or None


def _keys(args: argparse.Namespace, aes_key: bytes | None) -> KeyMaterial:
    """Key material from ``--identity``/``$DBCRATE_IDENTITY_FILE`` and the job's key.
    Raises ``SecretError``/``UsageError``/``InvalidKey`` naming the identity file (and
    the line, never its content)."""
    from dbcrate.codecs.age import recipient_of

    path = _identity_path(args)
    identities: list[str] = []
    if path:
        text = read_secret_file(path, file=path, key="identity")
        for n, raw in enumerate(text.splitlines(), 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            try:
                recipient_of(line)
            except InvalidKey as err:
                raise InvalidKey(f"identity file {path}: line {n} is not an age identity",
                                 hint=err.hint) from None
            identities.append(line)
        if not identities:
            raise UsageError(f"identity file {path} holds no identity",
                             hint="it should contain an AGE-SECRET-KEY-1... line")
    return KeyMaterial(identities=tuple(identities), aes_key=aes_key)


def _explain(err: DbcrateError, args: argparse.Namespace) -> None:
    """Name the identity file in a no-matching-identity error; give every error a hint."""
    path = _identity_path(args)
    if isinstance(err, NoMatchingIdentity) and path and path not in err.message:
        err.message = f"{err.message} (identity file {path})"
        err.args = (err.message,)
    if not err.hint:
        err.hint = ("read the error above; `dbcrate list JOB` shows the other backups and "
                    "docs/restore-by-hand.md restores with the stock tools")


def _check_restore_flags(args: argparse.Namespace, engine: str) -> None:
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


def restore(args: argparse.Namespace) -> int:
    """Restore a backup into a database (see ``run_restore``)."""
    cfg = _config(args)
    job = cfg.job(args.job)
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
    _check_restore_flags(args, job.engine)
    try:
        located = run_restore(
            cfg, job, _selector(args), keys=_keys(args, job.encryption_key), options=options,
            target=args.target, to_url=args.to, to_password=password,
            progress=_progress(args), allow_unencrypted=args.allow_unencrypted,
        )
    except DbcrateError as err:
        _explain(err, args)
        raise
    m = located.manifest
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


def cat(args: argparse.Namespace) -> int:
    """Write the native dump to stdout."""
    cfg = _config(args)
    job = cfg.job(args.job)
    if sys.stdout.isatty():
        raise UsageError("refusing to write a binary dump to a terminal",
                         hint="redirect stdout to a file or a pipe")
    try:
        run_cat(cfg, job, _selector(args), sys.stdout.buffer,
                keys=_keys(args, job.encryption_key), target=args.target,
                allow_unencrypted=args.allow_unencrypted)
    except DbcrateError as err:
        _explain(err, args)
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


# -- prune ------------------------------------------------------------------------------------


def prune(args: argparse.Namespace) -> int:
    """Apply retention to the named job (all jobs by default), saying why each is kept."""
    from dbcrate.operations.prune import run_prune

    cfg = _config(args)
    jobs = [cfg.job(args.job)] if args.job else list(cfg.jobs.values())
    exit_code = 0
    out: list[dict[str, Any]] = []
    for job in jobs:
        reports = run_prune(cfg, job, target=args.target, dry_run=args.dry_run)
        some_ok = any(not r.errors for r in reports)
        for report in reports:
            for err in report.errors:
                print_error(_in_job(err, f"{job.name} on target {report.target}"))
                exit_code = exit_code or _prune_code(err, some_ok)
            out.append({
                "job": job.name, "target": report.target, "dry_run": args.dry_run,
                "kept": [{"id": d.manifest.id, "reasons": list(d.reasons)}
                         for d in report.decisions if d.keep],
                "deleted": [d.manifest.id for d in report.decisions if not d.keep
                            and (args.dry_run or d.manifest.id in report.deleted)],
                "aborted_uploads": report.aborted_uploads,
                "ignored": [{"key": k, "reason": r} for k, r in report.ignored],
            })
            if args.json:
                continue
            verb = "would delete" if args.dry_run else "deleted"
            sys.stdout.write(f"{job.name} on {report.target}:\n")
            for d in report.decisions:
                when = catalog.encode_time(d.manifest.started_at)
                if d.keep:
                    sys.stdout.write(f"  keep    {d.manifest.id}  {when}  "
                                     f"({', '.join(d.reasons)})\n")
                elif args.dry_run or d.manifest.id in report.deleted:
                    sys.stdout.write(f"  {verb:<7} {d.manifest.id}  {when}\n")
            for key, why in report.ignored:
                sys.stdout.write(f"  ignored {key} (not counted, not deleted: {why})\n")
    if args.json:
        print_json(out)
    return exit_code


def _prune_code(err: DbcrateError, some_ok: bool) -> int:
    """A target that cannot be read or written, while another was pruned, makes the
    run partial (11)."""
    from dbcrate.errors import StorageError

    return PARTIAL_EXIT if some_ok and isinstance(err, StorageError) else err.exit_code


# -- target: see cli/targets.py ----------------------------------------------------------------
