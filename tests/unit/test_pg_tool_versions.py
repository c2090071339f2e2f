"""``--version`` of the PostgreSQL tools: asked side by side, once per process, and a
directory whose pg_dump and pg_restore disagree (or one is missing) is not used. The
executables are two-line scripts standing in for the tools' ``--version`` output only."""

from __future__ import annotations

from pathlib import Path

from dbcrate.engines.postgres import tools


def _tool(bin_dir: Path, name: str, version: str) -> Path:
    exe = bin_dir / name
    exe.write_text(f'#!/bin/sh\necho run >> "{bin_dir}/{name}.runs"\n'
                   f'echo "{name} (PostgreSQL) {version}"\n')
    exe.chmod(0o755)
    return exe


def test_both_versions_are_read_and_each_tool_runs_once(tmp_path: Path) -> None:
    _tool(tmp_path, "pg_dump", "17.4")
    _tool(tmp_path, "pg_restore", "17.4")
    wait = tools.prefetch({"pg_bin_dir": str(tmp_path)})
    wait()
    found = tools.tools_in(tmp_path, "pg_bin_dir")
    assert found == tools.PgTools(tmp_path, "17.4", "pg_bin_dir")
    assert tools.tools_in(tmp_path) is not None
    assert (tmp_path / "pg_dump.runs").read_text() == "run\n"
    assert (tmp_path / "pg_restore.runs").read_text() == "run\n"


def test_tools_that_disagree_or_are_missing_are_not_used(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    _tool(mixed, "pg_dump", "17.4")
    _tool(mixed, "pg_restore", "16.8")
    assert tools.tools_in(mixed) is None
    half = tmp_path / "half"
    half.mkdir()
    _tool(half, "pg_dump", "17.4")
    assert tools.tool_versions([half / "pg_dump", half / "pg_restore"]) == ["17.4", None]
    assert tools.tools_in(half) is None


def test_prefetch_without_a_configured_directory_runs_nothing() -> None:
    assert tools.prefetch({})() is None
