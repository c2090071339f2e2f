"""Secret references: ``${ENV}`` expansion and ``*_file`` keys.

Values are resolved in memory only. Error messages name the variable or file, never
the value.
"""

from __future__ import annotations

import base64
import binascii
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dbcrate.config.keys import SECRET_KEYS
from dbcrate.errors import ConfigError, SecretError

_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(value: str, *, file: str, key: str, env: Mapping[str, str] | None = None) -> str:
    """Replace every ``${NAME}`` in ``value`` with the environment variable's value.

    Raises ``SecretError`` if a referenced variable is unset.
    """
    environ = os.environ if env is None else env

    def sub(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in environ:
            raise SecretError(
                f"environment variable {name} is not set",
                hint=f"export {name} before running dbcrate, or use a *_file key",
                file=file,
                key=key,
            )
        return environ[name]

    return _REF.sub(sub, value)


def read_secret_file(path: str, *, file: str, key: str) -> str:
    """Read a secret from ``path``; one trailing newline is dropped.

    Raises ``SecretError`` if the file cannot be read.
    """
    try:
        text = Path(path).expanduser().read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(
            f"cannot read secret file {path}: {exc.strerror or exc}",
            hint="check the path and that dbcrate's user may read it",
            file=file,
            key=key,
        ) from None
    return text[:-1] if text.endswith("\n") else text


def decode_key(text: str, *, file: str, key: str) -> bytes:
    """Decode a base64 256-bit key. Raises ``ConfigError`` if it is not 32 bytes."""
    try:
        data = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(
            "is not valid base64",
            hint="generate one with: head -c 32 /dev/urandom | base64",
            file=file,
            key=key,
        ) from None
    if len(data) != 32:
        raise ConfigError(
            f"must decode to 32 bytes (256 bits), got {len(data)}",
            hint="generate one with: head -c 32 /dev/urandom | base64",
            file=file,
            key=key,
        )
    return data


def resolve_secrets(table: Mapping[str, Any], *, file: str, where: str) -> dict[str, Any]:
    """Copy ``table`` with ``${ENV}`` expanded in strings and ``X_file`` keys read into ``X``.

    Raises ``SecretError``/``ConfigError`` naming the key, never the value.
    """
    out: dict[str, Any] = {}
    for k, v in table.items():
        key = f"{where}.{k}" if where else k
        if isinstance(v, str):
            v = expand(v, file=file, key=key)
        if k.endswith("_file") and k[: -len("_file")] in SECRET_KEYS:
            base = k[: -len("_file")]
            if base in table:
                raise ConfigError(
                    f"both {base} and {k} are set", hint="keep one of them", file=file, key=key
                )
            if not isinstance(v, str):
                raise ConfigError("expected a file path", file=file, key=key)
            out[base] = read_secret_file(v, file=file, key=key)
            continue
        out[k] = v
    return out
