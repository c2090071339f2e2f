"""Terminal output: progress lines, human sizes, errors with hints."""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from typing import Any, TextIO

from dbcrate.errors import DbcrateError


def human(n: float) -> str:
    """``1.5 GiB`` style sizes."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"  # pragma: no cover


class TerminalProgress:
    """Progress on one rewritten stderr line, at most 4 updates a second."""

    def __init__(self, stream: TextIO | None = None) -> None:
        self.stream = stream or sys.stderr
        self._lock = threading.Lock()
        self._what = ""
        self._t0 = 0.0
        self._last = 0.0
        self._shown = False

    def start(self, what: str) -> None:
        self._what, self._t0, self._last = what, time.monotonic(), 0.0

    def update(self, source_bytes: int, stored_bytes: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.25:
            return
        with self._lock:
            self._last = now
            rate = source_bytes / max(now - self._t0, 1e-6)
            line = f"{self._what}: read {human(source_bytes)}"
            if stored_bytes != source_bytes:
                line += f", stored {human(stored_bytes)}"
            line += f", {human(rate)}/s"
            self.stream.write("\r\x1b[2K" + line)
            self.stream.flush()
            self._shown = True

    def finish(self) -> None:
        with self._lock:
            if self._shown:
                self.stream.write("\n")
                self.stream.flush()
            self._shown = False


def print_error(err: DbcrateError, stream: TextIO | None = None) -> None:
    """``dbcrate: error: MESSAGE`` then ``hint: HINT`` on stderr."""
    out = stream or sys.stderr
    out.write(f"dbcrate: error: {err.message}\n")
    if err.hint:
        out.write(f"hint: {err.hint}\n")


def print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def stdout_to_devnull() -> None:
    """After a failed write, point fd 1 at /dev/null so the interpreter's final flush of
    the unwritten buffer cannot fail again (and print a traceback-like warning)."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)
