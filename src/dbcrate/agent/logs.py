"""The agent's log lines on stderr: text, or one JSON object per line (``ts``, ``level``,
``msg``, plus ``job`` and ``event`` when the line is about one)."""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime

log = logging.getLogger("dbcrate.agent")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        for key in ("job", "event"):
            value = getattr(record, key, None)
            if value is not None:
                out[key] = value
        if record.exc_info:
            out["error"] = f"{record.exc_info[0].__name__ if record.exc_info[0] else ''}"
        return json.dumps(out, ensure_ascii=False)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        job = getattr(record, "job", None)
        prefix = f"[{job}] " if job else ""
        return f"dbcrate: {record.levelname.lower()}: {prefix}{record.getMessage()}"


def setup(fmt: str, verbose: int) -> None:
    """Send every log record to stderr in ``fmt`` (``text`` or ``json``)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose > 1 else logging.INFO)
    logging.captureWarnings(True)  # a library's warning is a log line too (json: an object)
    threading.excepthook = _thread_error


def _thread_error(args: threading.ExceptHookArgs) -> None:
    """A bug in a worker thread: one log line, not a traceback on stderr."""
    name = args.exc_type.__name__
    log.error(f"internal error in {args.thread.name if args.thread else 'a thread'}: {name}: "
              f"{args.exc_value}", extra={"event": "internal"})


def event(level: int, msg: str, *, job: str | None = None, ev: str | None = None) -> None:
    log.log(level, msg, extra={"job": job, "event": ev})
