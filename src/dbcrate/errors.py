"""The error tree. Every error a user can cause or fix is a ``DbcrateError``.

Each error carries a lowercase ``message`` that names the thing, a ``hint`` that says
what to do, and an ``exit_code`` the CLI returns. Messages never contain secrets.

Exit codes (documented in docs/exit-codes.md):

====  ===========================================================
 0    success
 1    internal error (a bug: please report it)
 2    usage or configuration error
 3    the dump tool or a pipeline stage failed during a backup
 4    storage error (unreachable, denied, missing object)
 5    integrity error (digest mismatch, corrupted or truncated data)
 6    decryption error (no matching identity, wrong key)
 7    restore refused or failed (target not empty, restore tool failed)
 8    database unreachable or authentication failed
 9    no backup matches the selection
10    a required tool is missing
14    the command's output could not be written (disk full, I/O error)
15    ``agent enroll``: the token or the server's CA was refused
16    the control plane cannot be reached
====  ===========================================================
"""

from __future__ import annotations


class DbcrateError(Exception):
    """Root of every error dbcrate raises on purpose."""

    exit_code: int = 1
    default_hint: str = ""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message


# -- usage and configuration -------------------------------------------------------------


class UsageError(DbcrateError):
    """The command line asks for something impossible or ambiguous."""

    exit_code = 2
    default_hint = "see `dbcrate --help`"


class ConfigError(DbcrateError):
    """The configuration file is missing, unreadable or invalid."""

    exit_code = 2
    default_hint = "see docs/config.md for every key and its type"

    def __init__(
        self,
        message: str,
        hint: str | None = None,
        *,
        file: str | None = None,
        key: str | None = None,
    ) -> None:
        where = ""
        if file and key:
            where = f"{file}: {key}: "
        elif file:
            where = f"{file}: "
        elif key:
            where = f"{key}: "
        super().__init__(where + message, hint)
        self.file = file
        self.key = key


class SecretError(ConfigError):
    """A secret reference (``${ENV}`` or ``*_file``) cannot be resolved."""


# -- databases and their tools -------------------------------------------------------------


class DatabaseError(DbcrateError):
    """The database server cannot be reached or refuses us."""

    exit_code = 8
    default_hint = "check the job's url, the password and that the server accepts connections"


class DatabaseUnreachable(DatabaseError):
    """No connection could be made to the database server."""


class AuthenticationFailed(DatabaseError):
    """The server rejected the credentials."""

    default_hint = "check password, password_file or the ${ENV} variable the job names"


class ToolNotFound(DbcrateError):
    """A native tool (pg_dump, pg_restore, ...) is not available."""

    exit_code = 10


class DumpFailed(DbcrateError):
    """The dump tool exited non-zero, was killed, or produced an incomplete dump."""

    exit_code = 3
    default_hint = "read the tool's error output above; no backup was recorded"

    def __init__(
        self, message: str, hint: str | None = None, *, stderr_tail: str = ""
    ) -> None:
        if stderr_tail:
            message = f"{message}\n{stderr_tail.rstrip()}"
        super().__init__(message, hint)
        self.stderr_tail = stderr_tail


class RestoreError(DbcrateError):
    """A restore could not be carried out."""

    exit_code = 7


class RestoreRefused(RestoreError):
    """The restore target is not in a state we may write to (e.g. not empty)."""

    default_hint = "restore into a new database with --to, or pass --clean to overwrite"


class RestoreFailed(RestoreError):
    """The restore tool failed; the target was left as it was."""


# -- storage ------------------------------------------------------------------------------


class StorageError(DbcrateError):
    """A storage target failed: unreachable, denied, or an upload that did not complete."""

    exit_code = 4
    default_hint = "check the target's settings with `dbcrate target check NAME`"


class ObjectNotFound(StorageError):
    """The object does not exist in storage."""


class StorageUnavailable(StorageError):
    """A storage failure that may go away if the same request is made again later
    (connection refused or reset, timeout, throttling, server error). Retry wrappers
    retry only this."""

    default_hint = (
        "the target may be briefly unavailable; try again, "
        "or check it with `dbcrate target check NAME`"
    )


# -- integrity and encryption --------------------------------------------------------------


class IntegrityError(DbcrateError):
    """Stored or restored bytes are not the bytes that were backed up."""

    exit_code = 5
    default_hint = (
        "the stored object is damaged; restore another backup (`dbcrate list`) or another target"
    )


class DigestMismatch(IntegrityError):
    """A SHA-256 digest or a size differs from the manifest."""


class CorruptedData(IntegrityError):
    """A codec found bytes it cannot have written (bad header, failed authentication)."""


class TruncatedData(IntegrityError):
    """The stream ended before its format says it is complete."""


class DecryptionError(DbcrateError):
    """The data cannot be decrypted with the key material given."""

    exit_code = 6


class NoMatchingIdentity(DecryptionError):
    """None of the given age identities is a recipient of the file."""

    default_hint = "pass the identity file whose recipient the backup was encrypted to (--identity)"


class WrongKey(DecryptionError):
    """The symmetric key does not match the one the backup was encrypted with."""

    default_hint = "use the encryption_key the backup was made with"


class InvalidKey(DecryptionError):
    """A key, identity or recipient string is malformed."""

    exit_code = 2


# -- catalog -------------------------------------------------------------------------------


class BackupNotFound(DbcrateError):
    """No backup matches the selection."""

    exit_code = 9
    default_hint = "run `dbcrate list JOB` to see the backups that exist"


class ManifestError(IntegrityError):
    """A manifest cannot be parsed or has an unknown format version."""


class OutputError(DbcrateError):
    """What a command writes to stdout or a file could not be written (disk full, I/O)."""

    exit_code = 14
    default_hint = "free space or write elsewhere; what was written is incomplete"


class UntrustedManifest(ManifestError):
    """A manifest is unsigned, signed by a key that is not trusted, or fails its HMAC."""

    default_hint = (
        "it may have been forged or edited in storage; restore another backup "
        "(`dbcrate list`), or check trusted_signers / the job's encryption_key"
    )


class DowngradeRefused(IntegrityError):
    """A manifest's encryption differs from what the job's config requires."""

    default_hint = (
        "someone may have replaced the backup in storage; to restore an old unencrypted "
        "backup on purpose pass --allow-unencrypted"
    )


# -- control plane ------------------------------------------------------------------------


class ControlPlaneError(DbcrateError):
    """The control plane (``dbcrate server``) or an agent's link to it failed."""

    exit_code = 2
    default_hint = "see docs/control-plane.md"


class EnrollmentRefused(ControlPlaneError):
    """``dbcrate agent enroll``: the token was refused (unknown, used, expired) or the
    server's CA does not match the one the token names. Nothing was saved (exit 15)."""

    exit_code = 15
    default_hint = "ask an admin for a new token: `dbcrate server enroll-token`"


class ControlPlaneUnreachable(ControlPlaneError):
    """No answer from the control plane (connection refused, TLS failure, timeout, a
    server error). The agent's link retries with backoff; ``agent enroll`` exits 16."""

    exit_code = 16
    default_hint = "check --server (or the enrollment's agent URL) and that `dbcrate server " \
                   "run` is up and reachable from this host"
