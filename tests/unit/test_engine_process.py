"""engines.process: real subprocesses streamed out and fed in."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbcrate.engines.process import feed_stdin, stream_stdout
from dbcrate.errors import DumpFailed, RestoreFailed, ToolNotFound
from tests.lib.procs import children as proc_children

ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin")}


def children() -> set[int]:
    """Pids (zombies included) whose parent is this process, other than those that existed
    when the test started (servers started by session fixtures)."""
    return _children() - _BASELINE


def _children() -> set[int]:
    return set(proc_children())


_BASELINE: set[int] = set()


@pytest.fixture(autouse=True)
def _baseline() -> Iterator[None]:
    _BASELINE.clear()
    _BASELINE.update(_children())
    yield


def open_fds() -> int:
    return len(list(Path("/proc/self/fd").iterdir()))


def test_streams_all_bytes_in_bounded_chunks() -> None:
    total = 0
    for chunk in stream_stdout(["head", "-c", str(40 << 20), "/dev/zero"], ENV, "head"):
        assert 0 < len(chunk) <= 1 << 20
        total += len(chunk)
    assert total == 40 << 20
    assert children() == set()


def test_nonzero_exit_raises_dump_failed_with_stderr_tail() -> None:
    script = "echo partial; echo 'x' >&2; for i in $(seq 1 2000); do echo line$i >&2; done; exit 3"
    with pytest.raises(DumpFailed) as info:
        list(stream_stdout(["sh", "-c", script], ENV, "tool"))
    assert "tool exited with status 3" in str(info.value)
    assert "line2000" in info.value.stderr_tail
    assert len(info.value.stderr_tail) <= 4096
    assert children() == set()


def test_killed_by_signal_is_named() -> None:
    with pytest.raises(DumpFailed, match="killed by SIGTERM"):
        list(stream_stdout(["sh", "-c", "echo hi; kill -TERM $$"], ENV, "tool"))


def test_redacted_secret_not_in_tail() -> None:
    with pytest.raises(DumpFailed) as info:
        list(
            stream_stdout(
                ["sh", "-c", "echo s3cret-xyz >&2; exit 1"], ENV, "t", redact=["s3cret-xyz"]
            )
        )
    assert "s3cret-xyz" not in str(info.value)


def test_missing_tool_raises_tool_not_found() -> None:
    with pytest.raises(ToolNotFound):
        list(stream_stdout(["/nonexistent/pg_dump"], ENV, "pg_dump"))


def test_closing_early_kills_the_tool_and_leaks_nothing() -> None:
    fds = open_fds()
    gen = stream_stdout(["cat", "/dev/zero"], ENV, "cat")
    assert next(gen)
    assert len(children()) == 1
    gen.close()
    assert children() == set()
    assert open_fds() == fds


def test_consumer_error_thrown_in_kills_the_tool() -> None:
    gen = stream_stdout(["cat", "/dev/zero"], ENV, "cat")
    next(gen)
    with pytest.raises(KeyError):
        gen.throw(KeyError("consumer failed"))
    assert children() == set()


def test_feed_stdin_writes_everything(tmp_path: Path) -> None:
    out = tmp_path / "out"
    data = [os.urandom(100_000) for _ in range(30)]
    feed_stdin(["sh", "-c", f"cat > {out}"], ENV, iter(data), "cat")
    assert out.read_bytes() == b"".join(data)


def test_feed_stdin_failing_source_kills_before_the_last_chunk(tmp_path: Path) -> None:
    out = tmp_path / "out"

    def chunks() -> Iterator[bytes]:
        yield b"first\n"
        yield b"second\n"
        raise ValueError("digest mismatch at the end")

    with pytest.raises(ValueError, match="digest mismatch"):
        feed_stdin(["sh", "-c", f"cat > {out}"], ENV, chunks(), "cat")
    # the chunk before the failure was held back, so the tool never saw the full input
    assert not out.exists() or b"second" not in out.read_bytes()
    assert children() == set()


def test_feed_stdin_tool_failure_raises_restore_failed() -> None:
    with pytest.raises(RestoreFailed, match="status 4") as info:
        feed_stdin(["sh", "-c", "echo bad input >&2; exit 4"], ENV, iter([b"x" * 10]), "t")
    assert "bad input" in str(info.value)


def test_feed_stdin_tool_that_stops_reading() -> None:
    big = (b"x" * (1 << 20) for _ in range(64))
    with pytest.raises(RestoreFailed, match="status 2"):
        feed_stdin(["sh", "-c", "head -c 10 >/dev/null; exit 2"], ENV, big, "t")
    assert children() == set()
