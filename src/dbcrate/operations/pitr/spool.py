"""The hand-over between ``dbcrate restore --pitr`` (which holds the identity) and the
recovery server's ``restore_command`` (a shell script that reads no key): the script asks
by creating ``want/NAME`` and waits; we answer with ``ready/NAME`` (fetched, decrypted,
digest-checked; moved into pg_wal by the script), ``none/NAME`` (not archived: exit 1, the
end of the archive) or ``fail/NAME`` (exit 200 > 125: PostgreSQL aborts recovery).
Segments after a requested one are fetched ahead (bounded) into ``ready/``."""

from __future__ import annotations

import os
import shlex
import tempfile
from pathlib import Path

_SCRIPT = """#!/bin/sh
# dbcrate restore --pitr: hands over the WAL the restore fetched; reads no key
s={spool}
f="$1"; p="$2"
[ -e "$s/ready/$f" ] || : > "$s/want/$f" || exit 200
while :; do
  if [ -e "$s/ready/$f" ]; then mv -f "$s/ready/$f" "$p" && exit 0; exit 200; fi
  if [ -e "$s/none/$f" ]; then rm -f "$s/none/$f"; exit 1; fi
  [ -e "$s/fail/$f" ] && exit 200
  [ -d "$s/want" ] || exit 200
  sleep 0.01
done
"""


class Spool:
    """The spool directory (owned by the server's user ``uid``/``gid`` when given)."""

    def __init__(self, root: Path, uid: int | None = None, gid: int | None = None) -> None:
        self.root = root
        self.uid, self.gid = uid, gid
        for sub in ("want", "ready", "none", "fail", "sock"):
            (root / sub).mkdir(mode=0o700)
            self._own(root / sub)
        script = root / "restore_command.sh"
        script.write_text(_SCRIPT.format(spool=shlex.quote(str(root))), encoding="utf-8")
        script.chmod(0o700)
        self._own(script)
        self._own(root)

    def _own(self, path: Path) -> None:
        if self.uid is not None and self.gid is not None:
            os.chown(path, self.uid, self.gid)

    @property
    def restore_command(self) -> str:
        return f"{shlex.quote(str(self.root / 'restore_command.sh'))} %f %p"

    def wanted(self) -> list[str]:
        """The names the server waits for, oldest request first."""
        try:
            entries = list(os.scandir(self.root / "want"))
        except FileNotFoundError:
            return []
        return [e.name for e in sorted(entries, key=lambda e: e.stat().st_mtime_ns)]

    def is_ready(self, name: str) -> bool:
        return (self.root / "ready" / name).exists()

    def put(self, name: str, data: bytes) -> None:
        """Make ``name`` ready (atomic rename), and answer a request for it."""
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=self.root)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        self._own(Path(tmp))
        Path(tmp).chmod(0o600)
        Path(tmp).replace(self.root / "ready" / name)
        self.answered(name)

    def answered(self, name: str) -> None:
        (self.root / "want" / name).unlink(missing_ok=True)

    def none(self, name: str) -> None:
        """``name`` is not archived: the script exits 1."""
        marker = self.root / "none" / name
        marker.touch()
        self._own(marker)
        self.answered(name)

    def fail(self, name: str) -> None:
        """``name`` cannot be given: the script exits 200 and recovery aborts."""
        (self.root / "fail" / name).touch()
        self.answered(name)

    def close(self) -> None:
        """Any waiting script exits 200 from now on."""
        for name in self.wanted():
            self.fail(name)
        (self.root / "want").rename(self.root / "want.closed")
