"""The Prometheus textfile (``[agent] metrics_file``), for node_exporter's textfile
collector: rewritten atomically (temp file + rename) at start and after each run."""

from __future__ import annotations

from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Gauge, write_to_textfile

from dbcrate.agent.state import StateDB
from dbcrate.agent.status import next_run
from dbcrate.config import Config

RESULTS = ("ok", "failed", "skipped", "interrupted")


def write(config: Config, db: StateDB, now: datetime | None = None) -> None:
    """Rewrite the metrics file, if one is configured. Raises ``OSError``."""
    path = config.agent.metrics_file
    if not path:
        return
    now = now or datetime.now(UTC)
    reg = CollectorRegistry()
    g = {name: Gauge(name, doc, ["job"], registry=reg) for name, doc in (
        ("dbcrate_last_run_timestamp_seconds", "when the last run of the job finished"),
        ("dbcrate_last_success_timestamp_seconds", "when the last successful backup finished"),
        ("dbcrate_last_run_ok", "1 if the last run succeeded, else 0"),
        ("dbcrate_last_backup_size_bytes", "stored size of the last successful backup"),
        ("dbcrate_next_run_timestamp_seconds", "the job's next scheduled slot"),
        ("dbcrate_max_age_seconds", "the job's max_age (0: none)"),
    )}
    runs = Gauge("dbcrate_runs_total", "runs of the job since the state DB was created, "
                 "by result", ["job", "result"], registry=reg)
    for job in config.jobs.values():
        last = db.last_run(job.name)
        if last is not None and last.result == "running":
            last = next((r for r in reversed(db.runs(job.name)) if r.result != "running"),
                        None)
        success = db.last_success(job.name)
        if last is not None and last.finished_at is not None:
            g["dbcrate_last_run_timestamp_seconds"].labels(job.name).set(
                last.finished_at.timestamp())
            g["dbcrate_last_run_ok"].labels(job.name).set(1 if last.result == "ok" else 0)
        if success is not None and success.finished_at is not None:
            g["dbcrate_last_success_timestamp_seconds"].labels(job.name).set(
                success.finished_at.timestamp())
            g["dbcrate_last_backup_size_bytes"].labels(job.name).set(success.size or 0)
        nxt = next_run(config, job, now)
        if nxt is not None:
            g["dbcrate_next_run_timestamp_seconds"].labels(job.name).set(nxt.timestamp())
        g["dbcrate_max_age_seconds"].labels(job.name).set(
            job.max_age.total_seconds() if job.max_age else 0)
        counts = db.counts(job.name)
        for result in RESULTS:
            runs.labels(job.name, result).set(counts.get(result, 0))
    write_to_textfile(path, reg)
