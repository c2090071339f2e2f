"""Benchmark: the CPU cost of counting rows at backup time (the ``stats`` part).

Builds a database on an embedded PostgreSQL (a narrow table of many small rows, the
worst case for a per-row counter, and a wider one), then measures

  dbcrate backup   the whole backup (zstd + age to a local target) as a child process:
                   user+sys CPU of it and its children (pg_dump included)
  row counter      the same ``pg_dump -Fc -Z0`` archive fed through the counter stage
                   (engines/postgres/archive.py) in 1 MiB chunks, in this process

and prints the counter's CPU as a share of the backup's; the counts are checked against
``count(*)``. No threshold is asserted (the target is under 5 %, docs/verify.md).

Usage: python bench/stats_cost.py [--rows 2000000] [--major 17]
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from dbcrate.codecs.age import generate_identity
from dbcrate.engines.postgres.archive import RowCounter
from dbcrate.sandbox import TempPostgres

DBCRATE = str(Path(sys.executable).with_name("dbcrate"))
CHUNK = 1 << 20


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=2_000_000)
    ap.add_argument("--major", type=int, default=17)
    args = ap.parse_args()
    with TempPostgres(args.major) as pg, tempfile.TemporaryDirectory() as tmp:
        pg.create_database("bench")
        pg.psql("CREATE TABLE narrow (id int PRIMARY KEY, v int); INSERT INTO narrow "
                f"SELECT g, g % 97 FROM generate_series(1, {args.rows}) g", db="bench")
        pg.psql("CREATE TABLE wide (id int, body text); INSERT INTO wide SELECT g, "
                f"repeat(md5(g::text), 8) FROM generate_series(1, {args.rows // 4}) g",
                db="bench")
        work = Path(tmp)
        _, recipient = generate_identity()
        pw = work / "pw"
        pw.write_text(pg.password)
        pw.chmod(0o600)
        (work / "dbcrate.toml").write_text(
            f'[backup]\nrecipients = ["{recipient}"]\n\n'
            f'[backup.targets.local]\ntype = "local"\npath = "{work / "out"}"\n\n'
            f'[[backup.jobs]]\nname = "bench"\nurl = "{pg.url("bench")}"\n'
            f'password_file = "{pw}"\ntargets = ["local"]\n')
        before = _children_cpu()
        t0 = time.monotonic()
        subprocess.run([DBCRATE, "--config", str(work / "dbcrate.toml"), "backup", "bench"],
                       check=True)
        backup_wall, backup_cpu = time.monotonic() - t0, _children_cpu() - before
        dump = work / "dump"
        with open(dump, "wb") as f:
            subprocess.run([str(pg.bin_dir / "pg_dump"), "-Fc", "-Z0", "-d", pg.url("bench")],
                           env={**os.environ, "PGPASSWORD": pg.password}, stdout=f,
                           check=True)
        counter = RowCounter()
        with open(dump, "rb") as f:
            for _ in counter(iter(lambda: f.read(CHUNK), b"")):
                pass
        counter_cpu = counter.cpu_seconds  # its feeds, not this file's reads
        counts = counter.counts()
        real = {t: pg.psql(f"SELECT count(*) FROM {t}", db="bench")[0][0]
                for t in ("narrow", "wide")}
        assert counts == {("public", t): n for t, n in real.items()}, counts
        size = dump.stat().st_size / 2**20
        print(f"archive: {size:.0f} MiB, {sum(real.values())} rows")
        print(f"dbcrate backup: {backup_wall:.1f}s wall, {backup_cpu:.2f}s CPU")
        print(f"row counter:    {counter_cpu:.2f}s CPU "
              f"({100 * counter_cpu / backup_cpu:.1f}% of the backup's CPU)")


if __name__ == "__main__":
    main()
