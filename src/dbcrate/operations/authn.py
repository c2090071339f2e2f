"""Which manifests a job trusts: signatures (``.sig`` objects), the aes-job HMAC, and
what a job's config requires of a backup's encryption (no downgrade).

Storage may be written by an attacker; nothing read from it is believed until it
passes ``authenticate``, and nothing is decoded until ``require_encryption`` agrees.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from dbcrate import catalog
from dbcrate.codecs.age import fingerprint
from dbcrate.config import Config, JobConfig
from dbcrate.errors import (
    DowngradeRefused,
    ManifestError,
    ObjectNotFound,
    UntrustedManifest,
    WrongKey,
)
from dbcrate.model import Manifest
from dbcrate.operations.pipeline import key_fingerprint
from dbcrate.storage import Storage

if TYPE_CHECKING:  # cryptography's key formats: loaded only for signers or an aes key
    from dbcrate import signing

log = logging.getLogger("dbcrate.authn")

sig_key = catalog.sig_key


@dataclass(frozen=True)
class Policy:
    """What one job requires of the manifests it reads."""

    job: str
    signers: tuple[signing.PublicKey, ...] = ()
    mac_key: bytes | None = field(default=None, repr=False)
    key_id: str = ""

    @property
    def signed(self) -> bool:
        return bool(self.signers)


def policy(job: JobConfig) -> Policy:
    """The job's policy: its trusted signers and, for aes-256-gcm, its HMAC key."""
    key = job.encryption_key if job.encryption == "aes-256-gcm" else None
    if key is None and not job.trusted_signers:
        return Policy(job.name)
    from dbcrate import signing

    signers = tuple(signing.parse_public_line(line) for line in job.trusted_signers)
    if key is None:
        return Policy(job.name, signers)
    return Policy(job.name, signers, signing.mac_key(key), key_fingerprint(key))


def policy_for(config: Config, job: str) -> Policy:
    """The policy of the configured ``job``; for a job not in the config, every signer
    any job trusts (so a configured trust is never bypassed by an unknown job name)."""
    if job in config.jobs:
        return policy(config.jobs[job])
    signers = {line for j in config.jobs.values() for line in j.trusted_signers}
    if not signers:
        return Policy(job)
    from dbcrate import signing

    return Policy(job, tuple(signing.parse_public_line(s) for s in sorted(signers)))


def authenticate(storage: Storage, key: str, body: bytes, m: Manifest, pol: Policy,
                 *, allow_unencrypted: bool = False) -> str:
    """Check the manifest ``m`` read from ``key`` (raw bytes ``body``) against ``pol``.

    Returns how it is authenticated: ``"signed by NAME"``, ``"hmac"`` or ``""`` (not at
    all: no signers configured and not an aes job, or a format-1 manifest of an aes job).
    Raises ``UntrustedManifest`` (exit 5) when signers are configured and it is unsigned,
    format 1, or signed by another key; when its HMAC is missing (format 2, except an
    unencrypted manifest with ``allow_unencrypted``) or wrong; ``ManifestError`` when it
    names a data object other than its own; ``WrongKey`` (exit 6) when the HMAC fails and
    the manifest names another key id than the job's key. Reads the ``.sig`` object only
    when signers are configured. Not atomic with respect to storage (read-only).
    """
    if catalog.manifest_key(m.data_key) != key:
        raise ManifestError(f"manifest {key} names data object {m.data_key}, not its own",
                            hint="it may have been edited or copied; it is ignored")
    how = ""
    if pol.mac_key is not None or pol.signed:
        from dbcrate import signing
    if pol.mac_key is not None and m.format >= 2:
        if not m.hmac:
            if not (allow_unencrypted and m.encryption == "none"):
                raise UntrustedManifest(f"manifest {key} has no hmac, but job {pol.job} "
                                        "is aes-256-gcm: every manifest it writes has one")
        elif not signing.mac_ok(pol.mac_key, catalog.mac_input(body), m.hmac):
            if m.key_id and m.key_id != pol.key_id:
                raise WrongKey(f"backup {m.id} ({key}) was made with another encryption_key "
                               f"(key id {m.key_id}; job {pol.job}'s is {pol.key_id})")
            raise UntrustedManifest(f"manifest {key} fails its hmac: it was edited, or "
                                    f"written with another key than job {pol.job}'s")
        else:
            how = "hmac"
    if pol.signed:
        if m.format < 2:
            raise UntrustedManifest(f"manifest {key} is format 1 (unsigned), and trusted "
                                    f"signers are configured for job {pol.job}")
        try:
            sig = b"".join(storage.get(sig_key(key)))
        except ObjectNotFound:
            raise UntrustedManifest(f"manifest {key} is not signed ({sig_key(key)} is "
                                    f"missing), and job {pol.job} requires a trusted "
                                    "signature") from None
        try:
            signer = signing.verify(sig, body, pol.signers, where=key)
        except ManifestError as exc:
            raise UntrustedManifest(exc.message, exc.hint) from None
        how = f"signed by {signer.name or signer.fingerprint()}"
    return how


def warn_weak(m: Manifest, key: str, job: JobConfig, how: str) -> None:
    """Say (once per call, on stderr) when a manifest about to be used is not
    authenticated: a format-1 manifest, or an age job without trusted signers."""
    if m.format < 2:
        log.warning("manifest %s is format 1 (written by an older dbcrate): it carries no "
                    "hmac or signature, so it is not authenticated", key)
    elif not how and job.encryption == "age":
        log.warning("manifests of job %s are not authenticated (age encrypts, it does not "
                    "authenticate: anyone with write access to the target and the public "
                    "recipient can forge a backup); set signing_key_file on the backing-up "
                    "host and trusted_signers here", job.name)


def require_encryption(m: Manifest, key: str, job: JobConfig,
                       *, allow_unencrypted: bool = False) -> None:
    """Refuse, before any byte is decoded, a manifest whose encryption is not what the
    job's config requires: age to (at least one of) the job's recipients, or
    aes-256-gcm with the job's key id. Any known compression is accepted (a job's
    compression may change over time; it is not a security property). A job with
    ``encryption = "none"`` accepts any encryption.

    With ``allow_unencrypted`` an unencrypted backup is accepted, with a loud warning.
    Raises ``DowngradeRefused`` (exit 5) naming the manifest, its claim and the job's
    requirement.
    """
    need = job.encryption
    if need == "none":
        return
    stages = " -> ".join(m.stages) or "none"
    claim = f"manifest {key} claims encryption {m.encryption!r} (stages {stages})"
    if m.encryption == "none":
        if allow_unencrypted:
            log.warning("RESTORING AN UNENCRYPTED BACKUP (--allow-unencrypted): %s, job %s "
                        "requires %s; make sure you trust where it came from",
                        claim, job.name, need)
            return
        raise DowngradeRefused(f"{claim}, but job {job.name} requires {need}; refusing to "
                               "decode it")
    if m.encryption != need:
        raise DowngradeRefused(f"{claim}, but job {job.name} requires {need}")
    if need == "age":
        wanted = {fingerprint(r) for r in job.recipients}
        if not wanted & set(m.recipients):
            raise DowngradeRefused(
                f"{claim} to recipients {', '.join(m.recipients)}, but job {job.name} "
                f"requires age to {', '.join(sorted(wanted))}",
                hint="if the job's recipients changed, list the old recipient too")
    elif need == "aes-256-gcm" and job.encryption_key is not None:
        kid = key_fingerprint(job.encryption_key)
        if m.key_id != kid:
            raise DowngradeRefused(
                f"{claim} with key id {m.key_id}, but job {job.name} requires key id {kid}",
                hint="it was made with another encryption_key")
