"""The MySQL/MariaDB verification (docs/verify.md): load the dump with the engine's own
restore into a disposable ``mariadbd`` (sandbox/mariadb.py), then rows per table against
those counted in the dump's INSERTs at backup time, ``CHECK TABLE ... EXTENDED`` on every
table, and the user checks (read-only, ``max_statement_time``)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dbcrate.config import JobConfig
from dbcrate.engines import Connection, RestoreOptions, open_engine
from dbcrate.errors import IntegrityError, RestoreFailed, ToolNotFound
from dbcrate.operations.pipeline import KeyMaterial
from dbcrate.operations.restore import Located, plaintext
from dbcrate.operations.verdict import FAIL, PASS, SKIP, Check, user_check
from dbcrate.sandbox import SandboxError
from dbcrate.sandbox.mariadb import TempMariaDB, find_server

DB = "dbcrate_verify"


def _ident(name: str) -> str:
    return "`" + name.replace("`", "``") + "`"


def verify_mysql(located: Located, job: JobConfig, keys: KeyMaterial, report: Any,
                 parent: Path | None, stats: dict[str, Any] | None) -> None:
    """Fill ``report`` (an ``operations.verify.Report``) for a MySQL/MariaDB backup.
    Raises ``ToolNotFound`` (no installed server of the backup's flavour and release
    series or newer; MySQL backups: no disposable mysqld is supported yet),
    ``SandboxError``, decryption errors."""
    binary = find_server(located.manifest.server_version)
    if binary.flavour != "mariadb":
        raise ToolNotFound(
            f"verify of MySQL backups ({located.manifest.server_version}) is not available: "
            "only a disposable MariaDB server is supported yet",
            hint="restore this one with `dbcrate restore --to` into a scratch MySQL server")
    with TempMariaDB(parent, server=binary.path) as server:
        report.server = server.version
        engine = open_engine("mysql", Connection(server.url(DB), server.password, job.options))
        t0 = time.monotonic()
        try:
            engine.restore(plaintext(located, keys), RestoreOptions())
        except (RestoreFailed, IntegrityError) as e:
            report.checks.append(Check("mysql_restore", FAIL, e.message.splitlines()[-1]))
            return
        report.restore_seconds = round(time.monotonic() - t0, 3)
        report.checks.append(Check("mysql_restore", PASS, "the dump loaded"))
        tables = [r[0] for r in server.sql(
            "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = "
            "'dbcrate_verify' AND TABLE_TYPE = 'BASE TABLE' ORDER BY 1")]
        # identifiers quoted by _ident; the server is disposable
        counts = {t: int(server.sql(f"SELECT COUNT(*) FROM {_ident(t)}", DB)[0][0])  # noqa: S608
                  for t in tables}
        report.checks.append(_counts(counts, stats, report))
        bad = []
        for t in tables:
            for row in server.sql(f"CHECK TABLE {_ident(t)} EXTENDED", DB):
                if (len(row) >= 4 and row[2].lower() in ("error", "warning")) \
                        or (len(row) >= 4 and row[2].lower() == "status" and row[3] != "OK"):
                    bad.append(f"{t}: {row[-1]}")
        report.checks.append(Check("check_table", FAIL if bad else PASS,
                                   "; ".join(bad) or f"{len(tables)} tables OK"))
        for uc in job.verify.checks:
            query = uc.sql.strip().rstrip(";")
            try:
                rows = server.sql("START TRANSACTION READ ONLY;\nSET STATEMENT "
                                  f"max_statement_time={job.verify.check_timeout:g} "
                                  f"FOR {query};\nROLLBACK;", DB)
            except SandboxError as e:
                problem: str | None = e.message.splitlines()[0]
            else:
                problem = user_check(uc.kind, uc.expected, [tuple(r) for r in rows])
            status = PASS if problem is None else uc.severity
            report.checks.append(Check("sql", status, problem or "met", name=uc.name))


def _counts(counts: dict[str, int], stats: dict[str, Any] | None, report: Any) -> Check:
    if stats is None:
        return Check("row_counts", SKIP, f"{len(counts)} tables restored; the backup holds "
                     "no backup-time counts")
    wrong = []
    for t in stats["tables"]:
        got = counts.get(str(t["table"]))
        report.tables.append({"schema": "", "table": t["table"], "expected": t["rows"],
                              "restored": got, "previous": None})
        if got != t["rows"]:
            wrong.append(f"{t['table']}: {t['rows']} at backup time, {got} restored")
    if wrong:
        return Check("row_counts", FAIL, "; ".join(wrong))
    return Check("row_counts", PASS, f"{len(stats['tables'])} tables as counted at backup time")
