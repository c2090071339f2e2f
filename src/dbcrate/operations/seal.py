"""Sealed secrets of the control plane: a short secret (a password, an S3 key) age-
encrypted to one agent's recipient, ASCII-armored exactly like ``age -a -r``, so the
server stores only ciphertext and the agent opens it in memory (docs/control-plane.md)."""

from __future__ import annotations

import base64

from dbcrate import codecs
from dbcrate.errors import DecryptionError, InvalidKey

BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
END = "-----END AGE ENCRYPTED FILE-----"


def seal(secret: str, recipient: str) -> str:
    """``secret`` encrypted to ``recipient``, armored. Raises ``InvalidKey`` for a bad
    recipient."""
    stage = codecs.make("age", recipients=[recipient]).encoder()
    raw = stage.feed(secret.encode("utf-8")) + stage.flush()
    b64 = base64.b64encode(raw).decode("ascii")
    lines = [b64[i:i + 64] for i in range(0, len(b64), 64)]
    return "\n".join([BEGIN, *lines, END]) + "\n"


def is_sealed(value: str) -> bool:
    return value.lstrip().startswith(BEGIN)


def unseal(armored: str, identities: tuple[str, ...]) -> str:
    """The secret in ``armored``. Raises ``DecryptionError`` (not for these identities,
    damaged) or ``InvalidKey``."""
    if not identities:
        raise InvalidKey("no identity to open a sealed secret",
                         hint="the agent's state dir holds its identity (agent enroll)")
    stage = codecs.make("age", identities=list(identities)).decoder()
    try:
        plain = stage.feed(armored.encode("ascii")) + stage.flush()
    except UnicodeError:
        raise DecryptionError("a sealed secret is not ASCII armor") from None
    return plain.decode("utf-8")
