"""Starting and stopping a test server process that listens on a loopback port."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path


def start_listening(argv: Sequence[str], port: int, log: Path, cwd: Path,
                    name: str) -> subprocess.Popen[bytes]:
    """Start ``argv`` (output to ``log``) and wait until it accepts connections on
    127.0.0.1:``port``. Raises ``RuntimeError`` with the log's tail if it exits or does
    not listen within 60 s."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{name} exited: {log.read_text()[-2000:]}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return proc
        except OSError:
            time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"{name} did not start: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen[bytes] | None) -> None:
    """Terminate ``proc`` (killed if it takes over 10 s) and reap it."""
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
