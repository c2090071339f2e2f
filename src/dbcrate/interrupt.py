"""Signals as an exception: SIGINT, SIGTERM and SIGHUP all end a run like Ctrl-C.

``install()`` (called once by an entry point: the CLI, later the agent) makes the first of
those signals stop every child tool we started (so no thread stays blocked on one) and
then raise :class:`Interrupted` -- a ``KeyboardInterrupt`` carrying the signal -- in the
main thread, so every ``finally`` and ``except BaseException`` clean-up runs exactly as
for Ctrl-C. Further signals while that clean-up runs are deferred (counted, never
raised), so a second Ctrl-C or a service manager's repeated SIGTERM cannot cut the
clean-up short; only SIGKILL can.

Clean-up code below the entry point reports what it removed with :func:`note_removed`,
and operations say what they are doing with :func:`doing`; the entry point prints one
line from :func:`summary`. Nothing here knows about a CLI.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from types import FrameType

#: the signals a terminal or a service manager sends to stop us
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


class Interrupted(KeyboardInterrupt):
    """Raised in the main thread when a stop signal arrives. ``exit_code`` is 143 for
    SIGTERM and 130 for SIGINT and SIGHUP (docs/exit-codes.md)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum

    @property
    def signame(self) -> str:
        return signal.Signals(self.signum).name

    @property
    def exit_code(self) -> int:
        return 143 if self.signum == signal.SIGTERM else 130


@dataclass
class _State:
    signum: int | None = None
    deferred: int = 0
    critical: int = 0
    pending: int | None = None
    activity: str = ""
    removed: list[str] = field(default_factory=list)
    children: set[subprocess.Popen[bytes]] = field(default_factory=set)
    lock: threading.RLock = field(default_factory=threading.RLock)


_state = _State()


def install(signals: Iterable[int] = SIGNALS) -> Callable[[], None]:
    """Handle ``signals`` as described in the module docstring and reset the state of a
    previous run. Returns a function that puts the previous handlers back. Outside the
    main thread (where Python delivers no signals) it only resets."""
    reset()
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    previous = {signum: signal.signal(signum, _handler) for signum in signals}

    def restore() -> None:
        for signum, handler in previous.items():
            signal.signal(signum, handler)

    return restore


def reset() -> None:
    """Forget a previous run's signal, activity and removals (children stay tracked)."""
    _state.signum = None
    _state.deferred = 0
    _state.critical = 0
    _state.pending = None
    _state.activity = ""
    _state.removed.clear()


def _handler(signum: int, frame: FrameType | None) -> None:
    if _state.signum is not None:  # clean-up after the first signal is running: defer
        _state.deferred += 1
        if _state.deferred == 1:
            with contextlib.suppress(OSError):
                os.write(2, b"dbcrate: still cleaning up; send SIGKILL to stop at once "
                            b"(leaves temporary files for the next run to remove)\n")
        return
    if _state.critical:  # e.g. between starting a child and tracking it: act at the end
        _state.pending = _state.pending or signum
        return
    _fire(signum)


def _fire(signum: int) -> None:
    _state.signum = signum
    stop_children()
    raise Interrupted(signum)


@contextlib.contextmanager
def critical() -> Iterator[None]:
    """Hold back a stop signal that arrives in this block (in the main thread, where
    signals are handled) until the block ends, then act on it. For short steps that must
    not be cut in half, such as starting a child tool and tracking it. Elsewhere a no-op."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    _state.critical += 1
    try:
        yield
    finally:
        _state.critical -= 1
        if not _state.critical and _state.pending is not None and _state.signum is None:
            signum, _state.pending = _state.pending, None
            _fire(signum)


def abort(signum: int = signal.SIGTERM) -> None:
    """End the current run from any thread without raising (the agent, after its grace
    period): ``signum`` becomes the interruption, so :func:`interrupted` reports it, every
    tracked child is killed and a child tracked from a worker from now on is killed at
    once. Operations check :func:`interrupted` before recording anything."""
    with _state.lock:
        _state.signum = signum
    stop_children()


def interrupted() -> Interrupted | None:
    """The interruption in progress, if a stop signal has arrived."""
    return None if _state.signum is None else Interrupted(_state.signum)


def doing(activity: str) -> None:
    """Say what the run is doing now (e.g. ``backup of orders``), for the final line."""
    _state.activity = activity


def note_removed(what: str) -> None:
    """Record that clean-up removed ``what`` (e.g. ``partial upload to target s3``).
    Recorded only while an interruption is being handled; never raises."""
    if _state.signum is not None and what not in _state.removed:
        _state.removed.append(what)


def summary(exc: Interrupted, fallback_activity: str = "") -> str:
    """The one line that says what was interrupted and what was removed."""
    activity = _state.activity or fallback_activity
    line = f"interrupted by {exc.signame}"
    if activity:
        line += f" during {activity}"
    if _state.removed:
        line += "; removed: " + ", ".join(_state.removed)
    return line + "; nothing was recorded for unfinished work"


# -- child processes ------------------------------------------------------------------------


def track(proc: subprocess.Popen[bytes]) -> None:
    """Register a child tool so a stop signal kills it. Pair with :func:`untrack`; start
    and track it inside :func:`critical` so no signal falls in between."""
    with _state.lock:
        _state.children.add(proc)
    if _state.signum is not None and threading.current_thread() is not threading.main_thread():
        _kill(proc)  # a worker started it as the run was being stopped: stop it too


def untrack(proc: subprocess.Popen[bytes]) -> None:
    """Forget a child (after it was waited for). Idempotent."""
    with _state.lock:
        _state.children.discard(proc)


def stop_children() -> None:
    """SIGKILL every tracked child still running (they are reaped by their owners)."""
    with _state.lock:
        procs = list(_state.children)
    for proc in procs:
        _kill(proc)


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.returncode is None:
        with contextlib.suppress(OSError):
            proc.kill()
