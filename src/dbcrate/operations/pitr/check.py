"""``dbcrate wal check JOB``: is the server set up to archive into this job? wal_level,
archive_mode, an archive_command naming this job, REPLICATION; then switch a segment and
wait until every target has it."""

from __future__ import annotations

import shlex
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

from dbcrate.config import Config, JobConfig
from dbcrate.engines import Connection
from dbcrate.engines.postgres.physical.settings import read_settings, switch_segment
from dbcrate.operations.pitr.archive import wait_archived
from dbcrate.storage import open_target


@dataclass
class CheckReport:
    archive_command: str
    problems: list[str] = field(default_factory=list)
    switched: str | None = None

    @property
    def ok(self) -> bool:
        return not self.problems


def archive_command(config: Config, job: JobConfig) -> str:
    """The exact archive_command for ``job`` (absolute paths)."""
    exe = shutil.which("dbcrate")
    argv = [exe] if exe else [sys.executable, "-m", "dbcrate"]
    src = config.source
    conf = ["--config", str(Path(src).resolve())] if src and not src.startswith("<") else []
    return " ".join([*map(shlex.quote, argv), "wal-push", shlex.quote(job.name), "%p",
                     *map(shlex.quote, conf)])


def check_archiving(config: Config, job: JobConfig, timeout: float = 60) -> CheckReport:
    """Check the server's settings, then switch and wait. Raises ``DatabaseError`` (cannot
    connect or switch), ``ArchiveTimeout`` (the switched segment never arrived)."""
    conn = Connection(job.url, job.password, job.options)
    report = CheckReport(archive_command(config, job))
    s = read_settings(conn)
    if s.wal_level not in ("replica", "logical"):
        report.problems.append(f"wal_level is {s.wal_level}: set wal_level = replica")
    if s.archive_mode not in ("on", "always"):
        report.problems.append(f"archive_mode is {s.archive_mode}: set archive_mode = on "
                               "(a restart is needed)")
    if f"wal-push {job.name} " not in f"{s.archive_command} ":
        report.problems.append(f"archive_command does not push to job {job.name}: set "
                               f"archive_command = '{report.archive_command}'")
    if not s.replication:
        report.problems.append("the role has no REPLICATION privilege")
    if report.problems:
        return report
    report.switched = switch_segment(conn)
    storages = {n: open_target(config.target(n)) for n in job.targets}
    wait_archived(storages, job.name, report.switched, timeout, "archive_command")
    return report


def current_segment(job: JobConfig) -> str | None:
    """The job's server's current segment (None when it cannot be asked)."""
    from dbcrate.engines.postgres.physical.settings import current_segment as ask

    return ask(Connection(job.url, job.password, job.options))
