#!/usr/bin/env python3
"""Stand-in for redis-cli: runs the real redis-cli with the same arguments.

- ``STANDIN_ARGV_LOG=FILE``: append this process's argv (JSON) and whether
  ``REDISCLI_AUTH`` was set, one line per run.
- ``STANDIN_TRUNCATE=N``: pass on only the first N bytes of the real tool's stdout and
  exit 0 (a snapshot cut short by a tool that does not notice).
"""

import json
import os
import subprocess
import sys

REAL = os.environ.get("STANDIN_REAL_TOOL", "redis-cli")

log = os.environ.get("STANDIN_ARGV_LOG")
if log:
    with open(log, "a") as f:
        f.write(json.dumps({"argv": sys.argv, "auth_env": "REDISCLI_AUTH" in os.environ}) + "\n")
limit = os.environ.get("STANDIN_TRUNCATE")
if sys.argv[1:] == ["--version"] or not limit:
    os.execvp(REAL, [REAL, *sys.argv[1:]])  # noqa: S606 - argv as given, no shell
proc = subprocess.Popen([REAL, *sys.argv[1:]], stdout=subprocess.PIPE)
assert proc.stdout is not None
left = int(limit)
while left > 0 and (data := proc.stdout.read(min(65536, left))):
    sys.stdout.buffer.write(data)
    left -= len(data)
sys.stdout.buffer.flush()
proc.kill()
proc.wait()
sys.exit(0)
