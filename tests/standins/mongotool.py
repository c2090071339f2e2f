#!/usr/bin/env python3
"""Stand-in for mongodump / mongorestore / mongosh (chosen by the name it is called by),
behaving like the tools as far as dbcrate relies on them:

- ``--version``: prints ``NAME version: 100.9.4-standin``.
- ``--config FILE``: a YAML file with ``password: "..."`` (read like the real tools do).
- mongodump ``--archive``: writes an archive (magic 0x8199e26d, then the bytes of
  ``$STANDIN_SOURCE``) to stdout in 64 KiB writes.
- mongorestore ``--archive``: reads stdin, checks the magic, writes the rest to
  ``$STANDIN_SINK``.
- mongosh ``--eval SCRIPT``: prints ``{"version": ..., "collections": N}`` (N = 1 when
  ``$STANDIN_SINK`` holds data, else 0); refuses a ``$DBCRATE_MONGO_URI`` whose password
  is not ``$STANDIN_EXPECT_PASSWORD`` like a rejected login.

Faults and records (environment):
- ``STANDIN_LOG=FILE``: append one JSON line: argv, the config file's mode and whether its
  password equals ``$STANDIN_EXPECT_PASSWORD``.
- ``STANDIN_FAIL_AFTER=N``: after N bytes, print an error to stderr and exit 1.
- ``STANDIN_AUTH_FAIL=1``: fail like a rejected login, before any output.
- ``STANDIN_HANG_AFTER=N``: after N bytes, sleep forever (to be killed).
- ``STANDIN_PID_FILE=FILE``: write our pid there first.
"""

import json
import os
import stat
import sys
import time
from pathlib import Path

MAGIC = bytes.fromhex("6de29981")
name = Path(sys.argv[0]).name.removesuffix(".py")
args = sys.argv[1:]
if args == ["--version"]:
    print(f"{name} version: 100.9.4-standin\ngit version: standin")
    sys.exit(0)
if name.startswith("mongosh"):
    from urllib.parse import unquote, urlsplit

    given = unquote(urlsplit(os.environ.get("DBCRATE_MONGO_URI", "")).password or "")
    if os.environ.get("STANDIN_AUTH_FAIL") or given != os.environ.get("STANDIN_EXPECT_PASSWORD"):
        sys.stderr.write("MongoServerError: Authentication failed.\n")
        sys.exit(1)
    sink = Path(os.environ.get("STANDIN_SINK", "/nonexistent"))
    full = sink.exists() and sink.stat().st_size > 0
    print(json.dumps({"version": "7.0.0-standin", "collections": 1 if full else 0}))
    sys.exit(0)
if pid_file := os.environ.get("STANDIN_PID_FILE"):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))

config_password = None
config_mode = None
for i, a in enumerate(args):
    if a == "--config":
        path = args[i + 1]
        config_mode = stat.S_IMODE(Path(path).stat().st_mode)
        with open(path) as f:
            for line in f:
                if line.startswith("password:"):
                    config_password = json.loads(line.split(":", 1)[1].strip())
if log := os.environ.get("STANDIN_LOG"):
    with open(log, "a") as f:
        f.write(json.dumps({
            "tool": name, "argv": sys.argv, "config_mode": config_mode,
            "password_ok": config_password == os.environ.get("STANDIN_EXPECT_PASSWORD"),
        }) + "\n")
if os.environ.get("STANDIN_AUTH_FAIL"):
    sys.stderr.write("2026-01-01T00:00:00.000+0000\tFailed: can't create session: failed to "
                     "connect to mongodb://127.0.0.1:27017/: connection() error occurred during "
                     "connection handshake: auth error: sasl conversation error: unable to "
                     "authenticate using mechanism \"SCRAM-SHA-256\": (AuthenticationFailed) "
                     "Authentication failed.\n")
    sys.exit(1)
if "--archive" not in args:
    sys.stderr.write("standin: only --archive to stdin/stdout is implemented\n")
    sys.exit(2)
fail_after = int(os.environ.get("STANDIN_FAIL_AFTER", "-1"))
hang_after = int(os.environ.get("STANDIN_HANG_AFTER", "-1"))


def checkpoint(done: int) -> None:
    if 0 <= fail_after <= done:
        sys.stderr.write(f"{name}: writing archive: connection reset by peer (after {done} "
                         "bytes)\nFailed: error writing data for collection `app.orders`\n")
        sys.exit(1)
    if 0 <= hang_after <= done:
        sys.stdout.flush()
        while True:
            time.sleep(60)


done = 0
if name.startswith("mongodump"):
    out = sys.stdout.buffer
    with open(os.environ["STANDIN_SOURCE"], "rb") as src:
        out.write(MAGIC)
        while data := src.read(65536):
            checkpoint(done)
            out.write(data)
            done += len(data)
    out.flush()
    sys.stderr.write("2026-01-01T00:00:00.000+0000\tdone dumping app.orders\n")
else:
    inp = sys.stdin.buffer
    if inp.read(4) != MAGIC:
        sys.stderr.write("Failed: stream or file does not appear to be a mongodump archive\n")
        sys.exit(1)
    with open(os.environ["STANDIN_SINK"], "wb") as sink:
        while data := inp.read(65536):
            checkpoint(done)
            sink.write(data)
            done += len(data)
    sys.stderr.write("2026-01-01T00:00:00.000+0000\tfinished restoring app.orders\n")
sys.exit(0)
