"""The signal mechanism itself, with real signals sent to this process: the first stop
signal raises ``Interrupted`` (exit code by signal) and kills tracked tools; a second one
during the clean-up is deferred; ``threaded`` closes its source in its own thread."""

from __future__ import annotations

import os
import signal
import subprocess
import threading
from collections.abc import Iterator

import pytest

from dbcrate import interrupt
from dbcrate.streams import threaded


@pytest.fixture
def installed() -> Iterator[None]:
    restore = interrupt.install()
    try:
        yield
    finally:
        restore()
        interrupt.reset()


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 130),
                                           (signal.SIGINT, 130)])
def test_a_stop_signal_raises_interrupted(installed: None, sig: int, code: int) -> None:
    with pytest.raises(interrupt.Interrupted) as caught:
        os.kill(os.getpid(), sig)
        raise AssertionError("not interrupted")
    assert isinstance(caught.value, KeyboardInterrupt)
    assert caught.value.exit_code == code
    assert caught.value.signame == signal.Signals(sig).name


def test_a_second_signal_during_clean_up_is_deferred(installed: None) -> None:
    cleaned: list[str] = []
    with pytest.raises(interrupt.Interrupted) as caught:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            raise AssertionError("not interrupted")
        finally:
            os.kill(os.getpid(), signal.SIGINT)  # e.g. an impatient second Ctrl-C
            os.kill(os.getpid(), signal.SIGTERM)
            interrupt.note_removed("partial upload to target local")
            cleaned.append("done")  # the clean-up ran to its end
    assert cleaned == ["done"]
    assert caught.value.signum == signal.SIGTERM  # the first signal decides the exit code
    assert interrupt.summary(caught.value) == (
        "interrupted by SIGTERM; removed: partial upload to target local; "
        "nothing was recorded for unfinished work")


def test_the_first_signal_kills_tracked_tools(installed: None) -> None:
    proc = subprocess.Popen(["sleep", "600"])
    interrupt.track(proc)
    try:
        with pytest.raises(interrupt.Interrupted):
            os.kill(os.getpid(), signal.SIGTERM)
            proc.wait()  # would block for 10 minutes without the kill
        assert proc.wait() == -signal.SIGKILL
    finally:
        interrupt.untrack(proc)
        proc.kill()
        proc.wait()


def test_removals_are_only_noted_during_an_interruption() -> None:
    interrupt.reset()
    interrupt.note_removed("something")
    assert "something" not in interrupt.summary(interrupt.Interrupted(signal.SIGINT))


def test_threaded_closes_its_source_in_its_own_thread() -> None:
    """The race of issue 7.5: the main thread never closes a generator another runs."""
    closed_in: list[str] = []
    started = threading.Event()

    def source() -> Iterator[bytes]:
        try:
            while True:
                started.set()
                yield b"x" * 1024
        finally:
            closed_in.append(threading.current_thread().name)

    for _ in range(50):  # the consumer stops at varying points of the producer's work
        it = threaded(source(), depth=2)
        next(it)
        started.wait()
        it.close()  # no "ValueError: generator already executing"
    assert closed_in == ["pipeline"] * 50


def test_a_signal_in_a_critical_step_acts_when_the_step_is_done(installed: None) -> None:
    steps: list[str] = []
    with pytest.raises(interrupt.Interrupted) as caught:
        with interrupt.critical():
            os.kill(os.getpid(), signal.SIGHUP)
            steps.append("child started and tracked")  # not cut in half
        steps.append("after the step")  # never reached
    assert steps == ["child started and tracked"]
    assert caught.value.exit_code == 130
