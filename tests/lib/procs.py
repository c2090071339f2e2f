"""Process and file helpers shared by fault tests."""

from __future__ import annotations

import os
import signal
from pathlib import Path


def children(name: str) -> list[int]:
    """PIDs of this process's direct children whose command name is ``name``."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if comm == name and ppid == os.getpid():
            pids.append(int(entry))
    return pids


def files_under(path: Path) -> list[str]:
    """Every file below ``path``, relative, sorted."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


class KillOnFirstBytes:
    """A Progress that SIGKILLs our child ``tool`` as soon as the first bytes arrive."""

    def __init__(self, tool: str) -> None:
        self.tool = tool
        self.killed: list[int] = []

    def start(self, what: str) -> None:
        pass

    def update(self, source_bytes: int, stored_bytes: int) -> None:
        if not self.killed:
            for pid in children(self.tool):
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)

    def finish(self) -> None:
        pass
