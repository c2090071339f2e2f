"""The real CLI as a running process, for signal tests: start it, wait until a tool it
started is running (read from /proc, no sleeps standing in for detection), signal it."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from typing import TypeVar

from tests.lib.e2e import DBCRATE, Setup
from tests.lib.procs import alive, cmdline, descendants

T = TypeVar("T")

#: the documented exit code of each stop signal (docs/exit-codes.md)
EXIT = {signal.SIGTERM: 143, signal.SIGHUP: 130, signal.SIGINT: 130}
STOP_SIGNALS = [signal.SIGTERM, signal.SIGHUP, signal.SIGINT]


class Running:
    """``dbcrate --config CONFIG ARGS`` started in the background."""

    def __init__(self, setup: Setup, *args: str, env: Mapping[str, str] | None = None,
                 session: bool = False) -> None:
        self.proc = subprocess.Popen(
            [DBCRATE, "--config", str(setup.config), *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **(env or {})}, start_new_session=session,
        )
        self.seen: dict[int, str] = {}

    def tools(self) -> dict[int, str]:
        """The live descendants now (remembered in ``seen``)."""
        now = descendants(self.proc.pid)
        self.seen.update(now)
        return now

    def tool(self, *names: str, arg: str = "") -> int | None:
        """The pid of a running descendant called one of ``names`` (with an argument
        starting with ``arg``: tells the real run from a ``--version`` probe), if any."""
        return next((pid for pid, comm in self.tools().items() if comm in names
                     and (not arg or any(a.startswith(arg) for a in cmdline(pid)))), None)

    def wait_for(self, probe: Callable[[], T | None], what: str, limit: float = 120) -> T:
        """Poll ``probe`` until it returns a value; fail if dbcrate ends first (a guard
        against a hang, not a timed assertion: no outcome depends on how fast it is)."""
        end = time.monotonic() + limit
        while True:
            value = probe()
            if value:
                return value
            if self.proc.poll() is not None:
                out, err = self.proc.communicate()
                raise AssertionError(f"dbcrate exited ({self.proc.returncode}) before {what}:"
                                     f"\n{out}\n{err}")
            if time.monotonic() > end:
                self.proc.kill()
                raise AssertionError(f"never saw {what}")
            time.sleep(0.005)

    def signal(self, sig: int, *, group: bool = False) -> tuple[int, str]:
        """Send ``sig`` (to the whole process group with ``group``, like Ctrl-C in a
        terminal) and wait for the exit; returns (exit code, stderr)."""
        self.tools()
        if group:
            os.killpg(self.proc.pid, sig)
        else:
            self.proc.send_signal(sig)
        _out, err = self.proc.communicate(timeout=300)
        return self.proc.returncode, err

    def leftover_tools(self) -> list[str]:
        """The tools we saw that still run after dbcrate exited."""
        return [f"{comm} ({pid})" for pid, comm in self.seen.items() if alive(pid)]


def assert_interrupted(code: int, stderr: str, sig: int, activity: str) -> str:
    """The documented exit code, no traceback, one line naming the signal and activity;
    returns that line."""
    assert code == EXIT[sig], stderr
    assert "Traceback" not in stderr, stderr
    lines = [line for line in stderr.splitlines() if "interrupted" in line]
    assert len(lines) == 1, stderr
    name = signal.Signals(sig).name
    assert lines[0].startswith(f"dbcrate: interrupted by {name} during {activity}"), stderr
    return lines[0]
