"""The one /proc scanner of the test suite, and what is built on it: child and descendant
lookups, ``ArgvWatcher`` (records every process's argv and environment while a test runs),
``KillOnFirstBytes`` (a Progress that SIGKILLs a tool), and file helpers (``files_under``,
``files_containing``, ``private_dirs``)."""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Proc:
    """One process as /proc/PID/stat describes it."""

    pid: int
    ppid: int
    comm: str
    state: str


def read_proc(pid: int | str) -> Proc | None:
    """The process ``pid``, or None if it is gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return Proc(int(pid), int(fields[1]), stat[stat.index("(") + 1 : stat.rindex(")")],
                fields[0])


def processes() -> dict[int, Proc]:
    """Every process on the machine, by pid."""
    out = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit() and (proc := read_proc(entry)) is not None:
            out[proc.pid] = proc
    return out


def children(name: str | None = None, parent: int | None = None) -> list[int]:
    """PIDs (zombies included) of the direct children of ``parent`` (default: this
    process) whose command name is ``name`` (any name when None)."""
    me = os.getpid() if parent is None else parent
    return [p.pid for p in processes().values()
            if p.ppid == me and (name is None or p.comm == name)]


def descendants(root: int | None = None, *, zombies: bool = False) -> dict[int, str]:
    """pid -> command name of every descendant of ``root`` (default: this process);
    zombies only with ``zombies``."""
    procs = processes()
    found: dict[int, str] = {}
    seen: set[int] = set()
    frontier = [os.getpid() if root is None else root]
    while frontier:
        parent = frontier.pop()
        for proc in procs.values():
            if proc.ppid == parent and proc.pid not in seen:
                seen.add(proc.pid)
                if zombies or proc.state != "Z":
                    found[proc.pid] = proc.comm
                frontier.append(proc.pid)
    return found


def alive(pid: int) -> bool:
    """Whether ``pid`` exists and is not a zombie."""
    proc = read_proc(pid)
    return proc is not None and proc.state != "Z"


def cmdline_bytes(pid: int | str) -> bytes:
    """The raw NUL-separated argv of ``pid`` (empty if it is gone)."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def cmdline(pid: int) -> list[str]:
    """The argv of ``pid`` (empty if it is gone)."""
    return [a.decode(errors="replace") for a in cmdline_bytes(pid).split(b"\0") if a]


@dataclass
class Seen:
    """A process as an ``ArgvWatcher`` saw it."""

    ppid: int
    comm: str
    cmdline: bytes
    environ: bytes


class ArgvWatcher:
    """Polls every process's argv (``seen``) and, per process, its parent, name and
    environment (``records``) while a test runs; use as a context manager."""

    def __init__(self) -> None:
        self.seen: set[bytes] = set()
        self.records: dict[tuple[int, bytes], Seen] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for entry in os.listdir("/proc"):
                if not entry.isdigit():
                    continue
                cmd = cmdline_bytes(entry)
                self.seen.add(cmd)
                key = (int(entry), cmd)
                if key in self.records:
                    continue
                proc = read_proc(entry)
                try:
                    env = Path(f"/proc/{entry}/environ").read_bytes()
                except OSError:
                    continue
                if proc is not None:
                    self.records[key] = Seen(proc.ppid, proc.comm, cmd, env)
            time.sleep(0.001)

    def __enter__(self) -> ArgvWatcher:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def descendants_of(self, marker: bytes) -> list[Seen]:
        """The processes seen below a process whose argv holds ``marker``."""
        below = {pid for (pid, cmd) in self.records if marker in cmd}
        found: dict[tuple[int, bytes], Seen] = {}
        grew = True
        while grew:
            grew = False
            for key, s in self.records.items():
                if s.ppid in below and key not in found:
                    found[key] = s
                    below.add(key[0])
                    grew = True
        return list(found.values())


class KillOnFirstBytes:
    """A Progress that SIGKILLs our child ``tool`` as soon as the first bytes arrive
    (``by_argv``: the child with an argument named ``tool``, for scripts whose command
    name is their interpreter's)."""

    def __init__(self, tool: str, *, by_argv: bool = False) -> None:
        self.tool = tool
        self.by_argv = by_argv
        self.killed: list[int] = []

    def start(self, what: str) -> None:
        pass

    def update(self, source_bytes: int, stored_bytes: int) -> None:
        if not self.killed:
            pids = (children(self.tool) if not self.by_argv else
                    [p for p in children() if any(Path(a).name == self.tool
                                                  for a in cmdline(p)[:2])])
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
                self.killed.append(pid)

    def finish(self) -> None:
        pass


def files_under(path: Path) -> list[str]:
    """Every file below ``path``, relative, sorted."""
    return sorted(str(p.relative_to(path)) for p in path.rglob("*") if p.is_file())


def files_containing(root: Path, needle: bytes, since: float) -> list[str]:
    """Files under ``root`` modified since ``since`` that contain ``needle``; files that
    vanish during the walk (other tests' temp dirs) are ignored."""
    hits = []
    for dirpath, _dirs, names in os.walk(root, onerror=lambda _e: None):
        for n in names:
            p = Path(dirpath) / n
            try:
                st = p.stat()
                if p.is_file() and st.st_mtime >= since and st.st_size < 64 << 20 and (
                    needle in p.read_bytes()
                ):
                    hits.append(str(p))
            except OSError:
                continue
    return hits


def private_dirs() -> set[str]:
    """The ``dbcrate-secret-*`` directories (private files for tools) that exist now."""
    found = set()
    for base in ("/dev/shm", "/tmp", os.environ.get("XDG_RUNTIME_DIR") or "/tmp"):
        for p in Path(base).glob("dbcrate-secret-*"):
            found.add(str(p))
    return found
