"""Make the measured dbcrate start like an installed one.

pip compiles a wheel's modules to bytecode when it installs them. This checkout is an
editable install, and where ``PYTHONDONTWRITEBYTECODE`` is set (this machine sets it)
every dbcrate process would compile its ~125 modules from source again, ~60 ms of each
command and each ``wal-push``. The benches therefore compile ``src/`` once before they
measure, so they measure dbcrate and not the compiler.
"""

from __future__ import annotations

import compileall
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"


def compile_sources() -> None:
    """Write the bytecode of every module under ``src/`` (as ``pip install`` does).
    Raises nothing; a module that does not compile is left to fail when imported."""
    compileall.compile_dir(str(SRC), quiet=1)
