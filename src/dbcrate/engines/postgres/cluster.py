"""Cluster-wide objects (roles, role memberships, tablespaces): dumped with
``pg_dumpall --globals-only``, applied with ``psql``.

Applying runs the whole script with ``ON_ERROR_STOP=0``, because a target cluster usually
has some of the roles already (at least the one we connect as): ``CREATE ROLE`` then fails
with "already exists" and the ``ALTER ROLE`` that follows brings the role's attributes and
password to the backed-up state, as ``pg_dumpall | psql`` does. Errors of the "already
exists" kind are expected and ignored; any other error (a tablespace directory missing,
permission denied) raises ``RestoreFailed`` after the script has run, before the database
itself is restored. Roles are not part of any database's transaction, so what the script
did before an error stays.
"""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterable, Sequence

from dbcrate.engines.process import ToolEnv, child_env, materialized
from dbcrate.errors import RestoreFailed

#: a globals script is a few KiB per role; anything beyond this is not one
MAX_SCRIPT = 64 << 20
_ERROR_RE = re.compile(r"^(?:psql:[^:]*:\d+: )?(?:ERROR|FATAL):\s+(.*)$")
_EXPECTED = ("already exists",)


def collect(chunks: Iterable[bytes]) -> bytes:
    """The whole script (the caller's chunks verify their digest at the end, so nothing is
    applied from a damaged part). Raises ``RestoreFailed`` beyond ``MAX_SCRIPT``."""
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        if len(buf) > MAX_SCRIPT:
            raise RestoreFailed("the globals part is larger than 64 MiB; it is not a "
                                "pg_dumpall --globals-only script")
    return bytes(buf)


def unexpected_errors(stderr: str) -> list[str]:
    """The ``ERROR``/``FATAL`` lines of psql's stderr that are not "already exists"."""
    out = []
    for line in stderr.splitlines():
        m = _ERROR_RE.match(line.strip())
        if m and not any(e in m.group(1) for e in _EXPECTED):
            out.append(m.group(1))
    return out


def apply(
    psql: str, conninfo: str, env: ToolEnv, script: bytes, where: str,
    redact: Sequence[str] = (),
) -> None:
    """Run ``script`` with ``psql`` against ``conninfo`` (no password in it: ``env`` has it).
    Raises ``RestoreFailed`` if psql cannot connect or any statement failed for another
    reason than an object that already exists. Not atomic (see the module docstring)."""
    argv = [psql, "-X", "-q", "--no-password", "-v", "ON_ERROR_STOP=0", "-d", conninfo,
            "-f", "-"]
    try:
        with materialized(env) as plain:
            proc = subprocess.run(argv, input=script, capture_output=True,
                                  env=child_env(plain), timeout=3600, check=False)
    except (OSError, subprocess.SubprocessError) as e:
        raise RestoreFailed(f"cannot run psql to apply the globals: {e}") from None
    text = proc.stderr.decode("utf-8", "replace")
    for secret in redact:
        if secret:
            text = text.replace(secret, "***")
    errors = unexpected_errors(text)
    if proc.returncode != 0 or errors:
        detail = "\n".join(errors[:20]) or text.strip()[-2000:]
        raise RestoreFailed(
            f"applying the cluster-wide objects (roles, tablespaces) to postgresql at {where} "
            f"failed ({len(errors)} error(s)); statements before and after the errors were "
            f"applied, the database itself was not restored\n{detail}",
            hint="fix the cause (e.g. create the tablespace directories, connect as a "
            "superuser) and restore again, or restore without --globals",
        )
