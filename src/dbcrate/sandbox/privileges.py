"""Running a disposable server as an unprivileged user: PostgreSQL refuses to run as root,
and a verifier must not let a restored (untrusted) dump's server read the identity."""

from __future__ import annotations

import pwd
import shutil
import socket
import subprocess

from dbcrate.errors import DbcrateError

SANDBOX_USER = "dbcrate-sandbox"


class SandboxError(DbcrateError):
    """The disposable server could not be set up, started or stopped."""

    exit_code = 1
    default_hint = "see the server log quoted above"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ensure_user(name: str) -> pwd.struct_passwd:
    """The user ``name``, created as a system user with no home and no shell if missing.
    Raises ``SandboxError`` if it cannot be created."""
    try:
        return pwd.getpwnam(name)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", name],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    try:
        return pwd.getpwnam(name)  # exit code 9 (exists) is a race we lost: fine
    except KeyError:
        raise SandboxError(
            f"cannot create the unprivileged user {name}: {proc.stderr.strip()}",
            hint="create it yourself (useradd --system) or run as a non-root user",
        ) from None


def drop_privileges_prefix(user: pwd.struct_passwd) -> list[str]:
    """The argv prefix that runs a command as ``user`` (setpriv, else runuser). Raises
    ``SandboxError`` if neither is installed."""
    setpriv = shutil.which("setpriv")
    if setpriv:
        return [setpriv, f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups", "--"]
    runuser = shutil.which("runuser")
    if runuser:
        return [runuser, "-u", user.pw_name, "--"]
    raise SandboxError(
        "running as root, but neither setpriv nor runuser is installed to drop privileges",
        hint="install util-linux, or run as a non-root user",
    )
