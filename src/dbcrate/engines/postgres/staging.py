"""Stage a decrypted dump for ``pg_restore -j`` (which needs a seekable file). This is the
only place where dbcrate writes a decrypted dump to disk, and the file never has a name:
it is created with ``O_TMPFILE`` (mode 0600) in the job's ``staging_dir`` (default
``$TMPDIR``, else ``/tmp``), and pg_restore and its workers open it as
``/proc/<our pid>/fd/<fd>`` while we hold it open. When we close it -- at the end of the
restore, on any error or stop signal, or because the kernel closes it after a SIGKILL --
the space is freed; no plaintext outlives the process.

Where ``O_TMPFILE`` is not supported the file is created in a fresh 0700 directory
``dbcrate-staging-<pid>-*`` and unlinked before the first byte is written; without
``/proc`` it keeps its name until the restore ends, and the next start removes the
directories of processes that no longer exist."""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from dbcrate import interrupt
from dbcrate.errors import RestoreFailed
from dbcrate.private_files import sweep_dead

PREFIX = "dbcrate-staging-"


@contextlib.contextmanager
def staged(
    chunks: Iterable[bytes], name: str = "dump.pgdump", *, under: str | None = None
) -> Iterator[Path]:
    """Write every chunk to a private, nameless temp file and yield a path that opens it
    (valid until the block ends); the file is gone when the block ends, also if
    ``chunks`` or the body raises. Errors from ``chunks`` propagate unchanged; a write
    failure (disk full, missing ``under``) raises ``RestoreFailed``."""
    base = under or tempfile.gettempdir()
    sweep_dead(base, PREFIX)
    fd, named = _open_private(base, name)
    try:
        for chunk in chunks:  # an error of the source propagates as it is
            _write(fd, chunk, base, under)
        yield named or Path(f"/proc/{os.getpid()}/fd/{fd}")
    finally:
        os.close(fd)
        if named is not None:
            shutil.rmtree(named.parent, ignore_errors=True)
        interrupt.note_removed("decrypted staging file")


def _open_private(base: str, name: str) -> tuple[int, Path | None]:
    """An fd of a new 0600 file under ``base``, and its path if it has to keep a name."""
    flags = os.O_RDWR | os.O_CLOEXEC
    proc_fd = Path(f"/proc/{os.getpid()}/fd").is_dir()
    try:
        if proc_fd and hasattr(os, "O_TMPFILE"):
            try:
                return os.open(base, os.O_TMPFILE | flags, 0o600), None
            except OSError as e:
                if e.errno not in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL):
                    raise
        directory = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=base))
        path = directory / name
        try:
            fd = os.open(path, flags | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
        except OSError:
            shutil.rmtree(directory, ignore_errors=True)
            raise
        if not proc_fd:
            return fd, path
        path.unlink()
        directory.rmdir()
        return fd, None
    except OSError as e:
        raise RestoreFailed(
            f"cannot create a private staging file under {base}: {e.strerror or e}",
            hint="set staging_dir to a writable directory with room for the decrypted dump",
        ) from None


def _write(fd: int, chunk: bytes, base: str, under: str | None) -> None:
    view = memoryview(chunk)
    try:
        while view:
            view = view[os.write(fd, view) :]
    except OSError as e:
        raise RestoreFailed(
            f"cannot stage the dump for a parallel restore in {base}: {e.strerror or e}; "
            "the target was not touched",
            hint=(f"the job's staging_dir ({under}) needs room for the whole decrypted dump: "
                  "point it at a private filesystem with room"
                  if under else
                  "set the job's staging_dir (or TMPDIR) to a private filesystem with room "
                  "for the decrypted dump")
            + ", or restore without --jobs (streams, writes nothing to disk)",
        ) from None
