"""One private place for the files dbcrate writes for a child tool (e.g. a password).

``secret_file()`` is the only way an engine writes a secret to disk: a fresh directory
(mode 0700) named ``dbcrate-secret-<pid>-*`` in memory-backed storage where there is
some (``/dev/shm``, else ``$XDG_RUNTIME_DIR``, else the temp dir), holding one file
(mode 0600), both removed on every way out of the ``with`` block: success, error, and
the stop signals (which unwind as exceptions, see ``dbcrate.interrupt``). A process
killed with SIGKILL cannot clean up, so every new private directory first removes the
``dbcrate-*-<pid>-*`` directories of processes that no longer exist.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from dbcrate import interrupt

SECRET_PREFIX = "dbcrate-secret-"  # noqa: S105 - a directory name


def private_base(under: str | None = None) -> str:
    """Where private directories go: ``under`` if given, else the first usable of
    ``/dev/shm`` and ``$XDG_RUNTIME_DIR`` (memory-backed), else the temp dir."""
    if under:
        return under
    for candidate in ("/dev/shm", os.environ.get("XDG_RUNTIME_DIR")):
        if candidate and Path(candidate).is_dir() and os.access(candidate, os.W_OK | os.X_OK):
            return candidate
    return tempfile.gettempdir()


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists (ours or another user's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_dead(base: str, prefix: str) -> int:
    """Remove directories ``base/<prefix><pid>-*`` whose process is gone (left by a
    SIGKILL). Returns how many were removed; never raises."""
    removed = 0
    try:
        entries = list(os.scandir(base))
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        pid_text = entry.name[len(prefix):].partition("-")[0]
        if not pid_text.isdigit() or pid_alive(int(pid_text)):
            continue
        with contextlib.suppress(OSError):
            if entry.is_dir(follow_symlinks=False) and entry.stat().st_uid == os.getuid():
                shutil.rmtree(entry.path)
                removed += 1
    return removed


def private_dir(prefix: str, under: str | None = None) -> Path:
    """A fresh 0700 directory ``<prefix><pid>-<random>`` under ``private_base(under)``,
    after sweeping dead processes' directories of the same prefix. The caller removes
    it. Raises ``OSError`` if it cannot be created."""
    base = private_base(under)
    sweep_dead(base, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=base))


@contextlib.contextmanager
def secret_file(name: str, text: str, *, under: str | None = None,
                what: str = "password file") -> Iterator[Path]:
    """Write ``text`` to a private file called ``name`` and yield its path; the file and
    its directory are removed when the block ends, however it ends. Raises ``OSError``
    if it cannot be created (then nothing is left behind)."""
    directory = private_dir(SECRET_PREFIX, under)
    try:
        path = directory / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        yield path
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        interrupt.note_removed(what)
