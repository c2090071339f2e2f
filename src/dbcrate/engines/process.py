"""Run a native dump/restore tool as a subprocess and stream its stdout or feed its stdin.

Dumps: a reader thread drains the tool's stdout (a 1 MiB pipe, 1 MiB reads, each straight
into the bytearray handed on) into a small bounded queue, so the tool keeps writing while
the consumer hashes and compresses, and memory stays bounded (queue depth x chunk size;
peak RSS is a bench figure, docs/bench.md). Restores: the caller's chunks are written
to the tool's stdin while threads drain its stdout and stderr. In both directions stderr
is kept as a bounded tail for error messages, and any early exit kills the tool and joins
every thread: no zombie, no leaked descriptor.

Secrets travel by ``env`` only, never by ``argv``; ``redact`` strings are masked in the
stderr tail before it reaches an exception. A child never inherits dbcrate's whole
environment (which may hold AWS keys, ``DBCRATE_RESTORE_PASSWORD`` or the variables
``${ENV}`` secrets came from): it gets ``child_env``, an allowlist plus the variables the
engine passes explicitly.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import queue
import shutil
import signal
import subprocess
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import IO, cast

from dbcrate import interrupt
from dbcrate.errors import DumpFailed, RestoreFailed, ToolNotFound
from dbcrate.private_files import SECRET_PREFIX, private_dir

#: size of one read from the tool's stdout, and of the pipe buffer we ask the kernel for
CHUNK = 1 << 20
#: how many chunks may wait between the reader thread and the consumer (2 measured as
#: fast as 8 and 6 MiB smaller; the pipe itself buffers another MiB)
QUEUE_DEPTH = 2
#: how much of the tool's stderr is kept for error messages
TAIL = 4096

#: variables every child keeps from dbcrate's environment (and every ``LC_*``)
INHERITED_ENV = ("PATH", "HOME", "USER", "LOGNAME", "LANG", "LANGUAGE", "TZ", "TMPDIR")
#: a space- or comma-separated list of more names (``NAME*`` = a prefix) to pass on
CHILD_ENV_VAR = "DBCRATE_CHILD_ENV"

_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_EOF = object()


class _Tail:
    """Collects the last ``TAIL`` bytes of a stream in a thread."""

    def __init__(self, stream: IO[bytes]) -> None:
        self._stream = stream
        self._buf = bytearray()
        self._thread = threading.Thread(target=self._run, name="tool-stderr", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        fd = self._stream.fileno()
        with contextlib.suppress(OSError):
            while data := os.read(fd, 65536):
                self._buf += data
                if len(self._buf) > 2 * TAIL:
                    del self._buf[:-TAIL]

    def join(self) -> None:
        self._thread.join()

    def text(self, redact: Sequence[str]) -> str:
        text = bytes(self._buf[-TAIL:]).decode("utf-8", "replace")
        for secret in redact:
            if secret:
                text = text.replace(secret, "***")
        return text.strip()


def _passed_on(name: str, extra: Sequence[str]) -> bool:
    if name in INHERITED_ENV or name.startswith("LC_"):
        return True
    if name.startswith("DBCRATE_"):  # ours (DBCRATE_RESTORE_PASSWORD...): never passed on
        return False
    return any(name == p or (p.endswith("*") and len(p) > 1 and name.startswith(p[:-1]))
               for p in extra)


@dataclass(frozen=True)
class PrivateFile:
    """An ``env`` value that the child gets as the path of a private file holding
    ``content`` (e.g. ``PGSERVICEFILE`` for secrets libpq has no variable for)."""

    content: str = field(repr=False)


#: what an engine passes as a tool's own variables
ToolEnv = Mapping[str, "str | PrivateFile"]


@contextlib.contextmanager
def materialized(env: ToolEnv) -> Iterator[dict[str, str]]:
    """``env`` with every ``PrivateFile`` written to a 0600 file in one fresh 0700
    directory, the one private place for secret files (``private_files.private_dir``:
    memory-backed where available, pid-named so a SIGKILL's leftover is swept), and
    replaced by its path. The directory is removed on exit, whatever happens (also on a
    stop signal); none is made without a ``PrivateFile``. Raises ``OSError`` if it cannot
    be created (nothing is left behind)."""
    files = {k: v for k, v in env.items() if isinstance(v, PrivateFile)}
    plain = {k: v for k, v in env.items() if isinstance(v, str)}
    if not files:
        yield plain
        return
    with interrupt.critical():
        directory = private_dir(SECRET_PREFIX)
    try:
        for i, (name, private) in enumerate(sorted(files.items())):
            path = directory / f"{i}.conf"
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(private.content)
            plain[name] = str(path)
        yield plain
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        interrupt.note_removed("tool secret file")


def child_env(
    explicit: Mapping[str, str] | None = None, *, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """The environment for a child process: the allowlisted variables of ``base`` (default
    ``os.environ``: ``INHERITED_ENV``, ``LC_*`` and the names listed in
    ``$DBCRATE_CHILD_ENV``, never a ``DBCRATE_*`` one), then ``explicit`` (the tool's own
    settings, e.g. ``PGPASSWORD``) on top. Pure; raises nothing."""
    source = os.environ if base is None else base
    extra = [p for p in source.get(CHILD_ENV_VAR, "").replace(",", " ").split() if p]
    env = {k: v for k, v in source.items() if _passed_on(k, extra)}
    env.update(explicit or {})
    return env


def _status(name: str, returncode: int) -> str:
    if returncode < 0:
        try:
            sig = signal.Signals(-returncode).name
        except ValueError:
            sig = f"signal {-returncode}"
        return f"{name} was killed by {sig}"
    return f"{name} exited with status {returncode}"


def _spawn(
    argv: Sequence[str], env: Mapping[str, str], name: str, *, stdin: int | None
) -> subprocess.Popen[bytes]:
    with interrupt.critical():  # a stop signal kills it, so no thread stays blocked on it
        try:
            proc = subprocess.Popen(
                list(argv),
                stdin=stdin,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=child_env(env),
                close_fds=True,
            )
        except FileNotFoundError as e:
            raise ToolNotFound(f"{name} not found: {argv[0]}") from e
        except PermissionError as e:
            raise ToolNotFound(f"{name} is not executable: {argv[0]}") from e
        interrupt.track(proc)
    return proc


def _kill(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
    proc.wait()
    interrupt.untrack(proc)


def _close(*streams: IO[bytes] | None) -> None:
    for s in streams:
        if s is not None:
            with contextlib.suppress(OSError):
                s.close()


def stream_stdout(
    argv: Sequence[str],
    env: ToolEnv,
    name: str,
    *,
    redact: Sequence[str] = (),
    chunk_size: int = CHUNK,
    depth: int = QUEUE_DEPTH,
) -> Iterator[bytes]:
    """Run ``argv`` and yield its stdout in chunks of up to ``chunk_size`` bytes.

    ``env`` holds only the tool's own variables (``PrivateFile`` values become private
    files that live until the tool has exited); the rest comes from ``child_env``.
    Raises as ``_stream_stdout``."""
    with materialized(env) as plain:
        yield from _stream_stdout(argv, plain, name, redact=redact, chunk_size=chunk_size,
                                  depth=depth)


def _stream_stdout(
    argv: Sequence[str],
    env: Mapping[str, str],
    name: str,
    *,
    redact: Sequence[str] = (),
    chunk_size: int = CHUNK,
    depth: int = QUEUE_DEPTH,
) -> Iterator[bytes]:
    """Run ``argv`` and yield its stdout in chunks of up to ``chunk_size`` bytes.

    ``env`` holds only the tool's own variables; the rest comes from ``child_env``.

    The tool starts on the first ``next()``. After its EOF, raises ``DumpFailed`` (with the
    stderr tail) if it exited non-zero or was killed by a signal; ``ToolNotFound`` if it
    cannot be started. Closing the generator early, or an exception thrown into it, kills
    the tool and joins the threads before returning."""
    proc = _spawn(argv, env, name, stdin=subprocess.DEVNULL)
    assert proc.stdout is not None and proc.stderr is not None
    out_fd = proc.stdout.fileno()
    with contextlib.suppress(OSError):
        fcntl.fcntl(out_fd, _F_SETPIPE_SZ, chunk_size)
    tail = _Tail(proc.stderr)
    chunks: queue.Queue[object] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def put(item: object) -> bool:
        while not stop.is_set():
            try:
                chunks.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def reader() -> None:
        # Hand on whole chunks (a reader that keeps up with the tool would otherwise pass on
        # every small write separately, and per-chunk costs would dominate), each read
        # straight into the buffer that travels on: no copy, and no second buffer held.
        try:
            while True:
                buf = bytearray(chunk_size)
                filled = 0
                with memoryview(buf) as view:
                    while filled < chunk_size and (n := os.readv(out_fd, [view[filled:]])):
                        filled += n
                if filled < chunk_size:
                    del buf[filled:]
                if filled and not put(buf):
                    return
                if filled < chunk_size:
                    put(_EOF)
                    return
        except OSError as e:
            put(e)

    thread = threading.Thread(target=reader, name=f"{name}-stdout", daemon=True)
    thread.start()
    finished = False
    try:
        while True:
            item = chunks.get()
            if item is _EOF:
                break
            if isinstance(item, OSError):
                raise DumpFailed(f"reading {name}'s output failed: {item}")
            assert isinstance(item, bytearray)
            # a bytearray nobody else holds or changes: every consumer (hashlib, zstd, the
            # counters, storage writes) takes it as it takes bytes, without a copy
            yield cast(bytes, item)
        thread.join()
        proc.wait()
        interrupt.untrack(proc)
        tail.join()
        finished = True
        if proc.returncode != 0:
            raise DumpFailed(_status(name, proc.returncode), stderr_tail=tail.text(redact))
    finally:
        if not finished:
            stop.set()
            _kill(proc)
            thread.join()
            tail.join()
        _close(proc.stdout, proc.stderr)


def _drain(stream: IO[bytes]) -> threading.Thread:
    def run() -> None:
        with contextlib.suppress(OSError):
            while os.read(stream.fileno(), 65536):
                pass

    t = threading.Thread(target=run, name="tool-stdout", daemon=True)
    t.start()
    return t


def _lookahead(chunks: Iterable[bytes]) -> Iterator[bytes]:
    """Yield each non-empty chunk only once the next one (or the clean end) has been read,
    so an error the source raises at its very end (a final digest or authentication check)
    arrives before the tool has seen the last byte and can finish."""
    held: bytes | None = None
    for chunk in chunks:
        if not chunk:
            continue
        if held is not None:
            yield held
        held = bytes(chunk)
    if held is not None:
        yield held


def feed_stdin(
    argv: Sequence[str],
    env: ToolEnv,
    chunks: Iterable[bytes],
    name: str,
    *,
    redact: Sequence[str] = (),
) -> None:
    """Run ``argv`` with ``chunks`` on its stdin (see ``_feed_stdin`` for what it raises).
    ``env`` as for ``stream_stdout``."""
    with materialized(env) as plain:
        _feed_stdin(argv, plain, chunks, name, redact=redact)


def _feed_stdin(
    argv: Sequence[str],
    env: Mapping[str, str],
    chunks: Iterable[bytes],
    name: str,
    *,
    redact: Sequence[str] = (),
) -> None:
    """Run ``argv`` with ``chunks`` on its stdin, draining its stdout and stderr.

    ``env`` holds only the tool's own variables; the rest comes from ``child_env``.

    If ``chunks`` raises, the tool is killed before it sees the end of its input (so a
    single-transaction restore cannot commit) and the error is re-raised unchanged. If the
    tool exits non-zero, is killed, or stops reading early, raises ``RestoreFailed`` with
    its stderr tail; ``ToolNotFound`` if it cannot be started."""
    proc = _spawn(argv, env, name, stdin=subprocess.PIPE)
    assert proc.stdin is not None and proc.stdout is not None and proc.stderr is not None
    with contextlib.suppress(OSError):
        fcntl.fcntl(proc.stdin.fileno(), _F_SETPIPE_SZ, CHUNK)
    tail = _Tail(proc.stderr)
    drain = _drain(proc.stdout)
    in_fd = proc.stdin.fileno()
    broken = False
    try:
        for chunk in _lookahead(chunks):
            view = memoryview(chunk)
            try:
                while view:
                    view = view[os.write(in_fd, view) :]
            except BrokenPipeError:
                broken = True
                break
        _close(proc.stdin)
        proc.wait()  # an interruption here (a stop signal) kills the tool as well
    except BaseException:
        _kill(proc)
        _close(proc.stdin)
        drain.join()
        tail.join()
        _close(proc.stdout, proc.stderr)
        raise
    interrupt.untrack(proc)
    drain.join()
    tail.join()
    _close(proc.stdout, proc.stderr)
    if proc.returncode != 0 or broken:
        what = _status(name, proc.returncode)
        if broken and proc.returncode == 0:
            what = f"{name} stopped reading its input before the end"
        raise RestoreFailed(f"{what}; the target was left as it was\n{tail.text(redact)}".rstrip())
