"""The manifest signers a host trusts: ``trusted_signers`` lines and the entries of an
``allowed_signers_file`` (OpenSSH format), read when the config is loaded."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dbcrate.errors import ConfigError, InvalidKey


def signers(merged: Mapping[str, Any], where: str, source: str) -> tuple[str, ...]:
    """The trusted keys as normalised ``ssh-ed25519 AAAA... name`` lines. Raises
    ``ConfigError`` naming the file and key."""

    def err(key: str, message: str, hint: str | None = None) -> ConfigError:
        return ConfigError(message, hint, file=source, key=key)

    value = merged.get("trusted_signers", [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise err(f"{where}.trusted_signers", "expected a list of "
                  "\"ssh-ed25519 AAAA... name\" strings")
    path = merged.get("allowed_signers_file")
    if not value and path is None:
        return ()
    from dbcrate import signing  # cryptography: only for a config that names signers

    try:
        keys = [signing.parse_public_line(v) for v in value]
    except InvalidKey as exc:
        raise err(f"{where}.trusted_signers", exc.message, exc.hint) from None
    if path is not None:
        key = f"{where}.allowed_signers_file"
        if not isinstance(path, str):
            raise err(key, f"expected a string, got {type(path).__name__}")
        try:
            with open(path, encoding="utf-8") as f:
                file_keys = signing.parse_allowed_signers(f.read())
        except OSError as exc:
            raise err(key, f"cannot read {path}: {exc.strerror or exc}") from None
        except (InvalidKey, UnicodeDecodeError) as exc:
            raise err(key, f"{path}: {exc}") from None
        if not file_keys:
            raise err(key, f"{path} holds no ssh-ed25519 signer",
                      hint="lines look like: NAME ssh-ed25519 AAAA...")
        keys += file_keys
    return tuple(k.line() for k in keys)
