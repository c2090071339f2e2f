"""A recovery server: PostgreSQL binaries of the backup's major run over a restored data
directory with recovery settings on the command line (nothing of them persists but
``archive_mode``), on a private unix socket and no TCP port (``--keep-running --port P``:
127.0.0.1:P), until it reaches its target. Progress is read from its log (``lc_messages =
C``), so no role of the restored cluster is needed."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from dbcrate import interrupt
from dbcrate.errors import RestoreFailed, ToolNotFound

_NEW_TLI = re.compile(r"selected new timeline ID: (\d+)")
_LAST_COMMIT = re.compile(r"last completed transaction was at log time ([0-9:. +-]+)")
_STOPPING = re.compile(r"recovery stopping [^\n]*")
_REDO_DONE = re.compile(r"redo done at ([0-9A-F]+/[0-9A-F]+)")
_FATAL = re.compile(r"(?:FATAL|PANIC):\s+(.*)")


@dataclass
class RecoveryState:
    """What the log says so far."""

    done: bool = False
    failed: str = ""
    timeline: int | None = None
    last_commit: str | None = None
    stopped_at: str | None = None
    redo_done: str | None = None


def parse_log(text: str, action: str) -> RecoveryState:
    """Read a recovery server's log: reached its target (per ``action``), failed, facts."""
    st = RecoveryState()
    if m := _NEW_TLI.search(text):
        st.timeline = int(m.group(1))
    commits = _LAST_COMMIT.findall(text)
    st.last_commit = commits[-1].strip() if commits else None
    if m := _STOPPING.search(text):
        st.stopped_at = m.group(0)
    if m := _REDO_DONE.search(text):
        st.redo_done = m.group(1)
    if action == "promote":
        st.done = "database system is ready to accept connections" in text
    elif action == "pause":
        st.done = "recovery has paused" in text or "pausing at the end of recovery" in text
    else:
        st.done = ("database system is shut down" in text and st.redo_done is not None) or \
            "shutdown at recovery target" in text
    if m := _FATAL.search(text):
        st.failed = m.group(1).strip()
    return st


@dataclass
class RecoveryServer:
    """One recovery run over ``data_dir``. ``prefix`` runs a command as the server's user."""

    bin_dir: Path
    data_dir: Path
    run_dir: Path
    settings: dict[str, str]
    prefix: Sequence[str] = ()
    port: int | None = None
    action: str = "promote"
    proc: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def log_file(self) -> Path:
        return self.run_dir / "server.log"

    def tool(self, name: str) -> str:
        path = self.bin_dir / name
        if not path.exists():
            raise ToolNotFound(f"{name} is not in {self.bin_dir}")
        return str(path)

    def verify_backup(self) -> None:
        """``pg_verifybackup -n`` over the unpacked base. Raises ``RestoreFailed``."""
        proc = subprocess.run([*self.prefix, self.tool("pg_verifybackup"), "-n", "-q",
                               str(self.data_dir)], capture_output=True, text=True,
                              check=False, timeout=600)
        if proc.returncode != 0:
            raise RestoreFailed(f"pg_verifybackup failed on {self.data_dir}: "
                                f"{(proc.stderr or proc.stdout).strip()[-1500:]}",
                                hint="the base backup does not match its backup_manifest")

    def start(self) -> None:
        """Start ``postgres`` (its own session, so it may outlive us). Raises
        ``ToolNotFound``."""
        args = [*self.prefix, self.tool("postgres"), "-D", str(self.data_dir)]
        net = {"listen_addresses": "127.0.0.1", "port": str(self.port)} if self.port else {
            "listen_addresses": "", "unix_socket_directories": str(self.run_dir / "sock")}
        for k, v in {**net, "lc_messages": "C", "logging_collector": "off",
                     "log_destination": "stderr", **self.settings}.items():
            args += ["-c", f"{k}={v}"]
        (self.run_dir / "sock").mkdir(mode=0o700, exist_ok=True)
        with self.log_file.open("ab") as log, interrupt.critical():
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True,
                                         close_fds=True, env=_server_env())
            interrupt.track(self.proc)

    def log_text(self) -> str:
        try:
            return self.log_file.read_text("utf-8", "replace")
        except OSError:
            return ""

    def wait(self, poll: float = 0.05) -> RecoveryState:
        """One look: the log's state; ``failed`` set if the server exited without reaching
        its target. Never blocks longer than ``poll``."""
        time.sleep(poll)
        st = parse_log(self.log_text(), self.action)
        assert self.proc is not None
        if self.proc.poll() is not None and not st.done:
            st.failed = st.failed or f"the server exited with status {self.proc.returncode}"
        return st

    def stop(self, *, fast: bool = True, timeout: float = 120) -> None:
        """Stop the server (fast shutdown: a clean checkpoint; else immediate). Idempotent."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGINT if fast else signal.SIGQUIT)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        interrupt.untrack(proc)

    def release(self) -> None:
        """Leave the server running (``--keep-running``)."""
        if self.proc is not None:
            interrupt.untrack(self.proc)

    def tail(self, n: int = 1500) -> str:
        return self.log_text()[-n:]


def _server_env() -> dict[str, str]:
    return {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C", "TZ": "UTC"}


def write_archive_off(data_dir: Path) -> None:
    """Persist ``archive_mode = off`` in the copy's postgresql.auto.conf (the copy must not
    archive into the job's WAL unless it replaces the job's server)."""
    conf = data_dir / "postgresql.auto.conf"
    with conf.open("a", encoding="utf-8") as f:
        f.write("# dbcrate restore --pitr: this copy archives nothing "
                "(restore --resume-archiving to let it)\narchive_mode = 'off'\n")
