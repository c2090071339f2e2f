"""The agent's abort reaching run_backup after the dump ended but before any manifest is
written (real PostgreSQL, real local storage): the run raises Interrupted and leaves no
object behind."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from dbcrate import config, interrupt
from dbcrate.errors import DumpFailed
from dbcrate.operations.backup import run_backup
from tests.lib.e2e import local_target, make_setup
from tests.lib.procs import files_under
from tests.servers.postgres import PgDatabase


class AbortWhenDumped:
    """A Progress that aborts the run the moment the dump has been stored."""

    def start(self, what: str) -> None:
        pass

    def update(self, source_bytes: int, stored_bytes: int) -> None:
        pass

    def finish(self) -> None:
        interrupt.abort(signal.SIGTERM)


@pytest.fixture
def clean_interrupt() -> Iterator[None]:
    interrupt.reset()
    yield
    interrupt.reset()


@pytest.mark.parametrize("with_globals", [False, True])
def test_abort_before_the_manifest_leaves_nothing(
    pg_db: PgDatabase, tmp_path: Path, clean_interrupt: None, with_globals: bool
) -> None:
    """Without globals the abort lands after the only dump (the check before the
    manifest raises); with globals it lands after the globals part was stored and kills
    the main dump's pg_dump as it starts, and the stored part is removed."""
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password, encryption="none",
                       targets=[local_target(tmp_path / "backups")],
                       job_extra={"globals": with_globals})
    cfg = config.load(setup.config)
    expected = DumpFailed if with_globals else interrupt.Interrupted
    with pytest.raises(expected):
        run_backup(cfg, cfg.job("orders"), AbortWhenDumped())
    assert interrupt.interrupted() is not None
    backups = tmp_path / "backups"
    assert not backups.exists() or files_under(backups) == []
    interrupt.reset()
    result = run_backup(cfg, cfg.job("orders"))  # the same job runs fine afterwards
    assert result.ok
    assert len([f for f in files_under(backups) if f.endswith(".json")]) == 1
