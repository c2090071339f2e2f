"""Secret references: ``${ENV}`` expansion and ``*_file`` keys.

Values are resolved in memory only. Error messages name the variable or file, never
the value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path

from dbcrate.errors import SecretError

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
