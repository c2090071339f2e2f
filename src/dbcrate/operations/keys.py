"""Key material: new age identities and signing keys (``keygen``), and reading identity
files for restore/cat. Private keys live only in files (0600) and memory."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

from dbcrate.config import read_secret_file
from dbcrate.errors import InvalidKey, UsageError


def new_identity() -> tuple[str, str]:
    """A new age identity file's text and its recipient (``age1...``)."""
    from dbcrate.codecs.age import generate_identity

    identity, recipient = generate_identity()
    created = datetime.now(UTC).replace(microsecond=0).isoformat()
    return f"# created: {created}\n# public key: {recipient}\n{identity}\n", recipient


def write_identity(path: str) -> str:
    """Write a new age identity to ``path`` (mode 0600, never overwriting); its recipient.

    Raises ``UsageError`` if ``path`` exists or cannot be created. Atomic: the file is
    created exclusively."""
    text, recipient = new_identity()
    target = Path(path)
    try:
        fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise UsageError(f"{target} already exists; refusing to overwrite an identity",
                         hint="choose another -o FILE or move the old one away") from None
    except OSError as exc:
        raise UsageError(f"cannot create {target}: {exc.strerror}") from None
    with os.fdopen(fd, "w") as f:
        f.write(text)
    return recipient


def write_signing_key(path: str) -> str:
    """Write a new Ed25519 signing key (OpenSSH format, 0600, never overwriting) to
    ``path``; its public ``ssh-ed25519 ...`` line. Raises ``UsageError``."""
    from dbcrate import signing

    pem, public = signing.generate()
    try:
        signing.write_private(path, pem)
    except FileExistsError:
        raise UsageError(f"{path} already exists; refusing to overwrite a key",
                         hint="choose another -o FILE or move the old one away") from None
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from None
    return public.line()


def read_identities(path: str) -> tuple[str, ...]:
    """The age identities in the file at ``path``. Raises ``SecretError`` (unreadable),
    ``InvalidKey`` naming the file and the line (never its content), ``UsageError`` for a
    file holding none."""
    from dbcrate.codecs.age import recipient_of

    text = read_secret_file(path, file=path, key="identity")
    identities: list[str] = []
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
    return tuple(identities)
