"""One-time tokens, session ids and passwords: tokens are 256 random bits, stored as
SHA-256 only; passwords are Argon2id hashes (argon2-cffi's defaults)."""

from __future__ import annotations

import hashlib
import hmac
import secrets as _random

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_HASHER = PasswordHasher()  # argon2id
#: a hash to verify against when the user is unknown, so timing does not tell
_DUMMY = _HASHER.hash("dbcrate-no-such-user")


def new_token() -> str:
    """256 random bits, URL-safe."""
    return _random.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode(), b.encode())


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_password(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored`` (None: an unknown user, checked against a
    dummy hash so both take the same time)."""
    try:
        return _HASHER.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False
