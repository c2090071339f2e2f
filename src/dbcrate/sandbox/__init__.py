"""Disposable database servers and sample data, for tests, the demo and verified restores."""

from __future__ import annotations

from dbcrate.sandbox.postgres import TempPostgres
from dbcrate.sandbox.privileges import SANDBOX_USER, SandboxError, free_port
from dbcrate.sandbox.sample import load_sample, table_checksums

__all__ = [
    "SANDBOX_USER",
    "SandboxError",
    "TempPostgres",
    "free_port",
    "load_sample",
    "table_checksums",
]
