"""cli/walfast.py: which command lines take the light wal-push / wal-fetch path (the rest
goes to the full parser), and that it imports no command module."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dbcrate.cli.walfast import fast_command, run_fetch, run_push


def test_archive_and_restore_command_lines_take_the_fast_path() -> None:
    fast = fast_command(["wal-push", "orders", "pg_wal/0001", "--config", "/etc/c.toml"])
    assert fast is not None
    handler, args = fast
    assert handler is run_push
    assert (args.job, args.path, args.config, args.verbose) == (
        "orders", "pg_wal/0001", "/etc/c.toml", 0)
    fast = fast_command(["--config=/c.toml", "-v", "wal-fetch", "orders", "0001", "p",
                         "-i", "/id", "--target", "s3"])
    assert fast is not None
    handler, args = fast
    assert handler is run_fetch
    assert (args.job, args.name, args.path, args.config, args.identity, args.target,
            args.verbose) == ("orders", "0001", "p", "/c.toml", "/id", "s3", 1)


@pytest.mark.parametrize("argv", [
    ["wal-push", "orders"],                         # a missing argument
    ["wal-push", "orders", "p", "extra"],
    ["wal-push", "orders", "p", "--help"],
    ["wal-push", "orders", "p", "--identity", "x"],  # not a wal-push option
    ["wal-fetch", "orders", "n", "p", "--identity"],  # no value
    ["-vv", "wal-push", "orders", "p"],
    ["backup", "wal-push"],                          # another command
    ["wal", "verify", "wal-push"],
    ["--config", "wal-push", "list"],
])
def test_anything_else_goes_to_the_full_parser(argv: list[str]) -> None:
    assert fast_command(argv) is None


def test_the_fast_path_imports_no_command_module() -> None:
    code = ("import sys; from dbcrate.cli import main; "
            "main._run(['wal-push', 'j', '/nonexistent/000000010000000000000001', "
            "'--config', '/nonexistent.toml']); "
            "print(sorted(m for m in sys.modules if m.startswith(('dbcrate.cli.commands', "
            "'dbcrate.signing', 'dbcrate.engines.postgres.physical.engine', 'argparse.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]", out.stdout
