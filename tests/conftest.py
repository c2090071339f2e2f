"""Test configuration. Real servers are started by the fixture modules in tests/servers/.

Layout: tests/unit/ (pure, no servers), tests/integration/ (real servers), tests/contract/
(one suite per layer, parametrized from harness registries: engines.py, harnesses.py),
tests/lib/ (shared test code: the /proc scanner, e2e setup), tests/servers/ (fixtures:
each database fixture exposes ``url``, ``password``, ``checksums()``), tests/standins/
(stand-in tools). Test modules never import each other."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

pytest_plugins = [
    "tests.servers.postgres",
    "tests.servers.pitr",
    "tests.servers.s3",
    "tests.servers.mariadb",
    "tests.servers.redis",
    "tests.servers.sshd",
    "tests.servers.azurite",
    "tests.servers.gcs",
    "tests.servers.mongodb",
    "tests.servers.backed",
    "tests.servers.notify",
    "tests.servers.controlplane",
]

# Children get an allowlisted environment (engines/process.py: child_env); the stand-in
# tools in tests/standins/ are configured by STANDIN_* variables, so pass those on.
os.environ.setdefault("DBCRATE_CHILD_ENV", "STANDIN_*")

# The CLI appends audit records to [agent] state_dir (default: the user's state dir); keep
# the test run's records out of the home directory, in a directory removed at the end.
if "DBCRATE_STATE_DIR" not in os.environ:
    _state_dir = tempfile.mkdtemp(prefix="dbcrate-test-state-")
    os.environ["DBCRATE_STATE_DIR"] = _state_dir
    atexit.register(shutil.rmtree, _state_dir, ignore_errors=True)
