"""Stage a decrypted dump in a private temporary file, for ``pg_restore -j`` (which needs
a seekable file). This is the only place where dbcrate writes a decrypted dump to disk:
a fresh 0700 directory under the job's ``staging_dir`` (default ``$TMPDIR``, else ``/tmp``)
holding one 0600 file, removed
when the restore ends, whether it succeeded or not."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import BinaryIO

from dbcrate.errors import RestoreFailed

PREFIX = "dbcrate-restore-"


@contextlib.contextmanager
def staged(
    chunks: Iterable[bytes], name: str = "dump.pgdump", *, under: str | None = None
) -> Iterator[Path]:
    """Write every chunk to a private temp file and yield its path; the directory is
    removed on exit (also if ``chunks`` or the body raises). Errors from ``chunks``
    propagate unchanged; a write failure (disk full, missing ``under``) raises
    ``RestoreFailed``."""
    try:
        tmp = Path(tempfile.mkdtemp(prefix=PREFIX, dir=under))  # mode 0700
    except OSError as e:
        raise RestoreFailed(
            f"cannot create a private staging directory under {under or tempfile.gettempdir()}:"
            f" {e.strerror or e}",
            hint="set staging_dir to a writable directory with room for the decrypted dump",
        ) from None
    try:
        path = tmp / name
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            for chunk in chunks:  # an error of the source propagates as it is
                _write(f, chunk, tmp, under)
            _write(f, b"", tmp, under, flush=True)
        yield path
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _write(
    f: BinaryIO, chunk: bytes, tmp: Path, under: str | None, *, flush: bool = False
) -> None:
    try:
        f.write(chunk)
        if flush:
            f.flush()
    except OSError as e:
        raise RestoreFailed(
            f"cannot stage the dump for a parallel restore in {tmp}: {e.strerror or e}; "
            "the target was not touched",
            hint=(f"the job's staging_dir ({under}) needs room for the whole decrypted dump: "
                  "point it at a private filesystem with room"
                  if under else
                  "set the job's staging_dir (or TMPDIR) to a private filesystem with room "
                  "for the decrypted dump")
            + ", or restore without --jobs (streams, writes nothing to disk)",
        ) from None
