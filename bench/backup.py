"""Benchmark: dbcrate backup/restore against the raw PostgreSQL tools, in one run.

Builds a database of at least --size-gb GB (pgbench tables plus text, jsonb and bytea
columns) on an embedded PostgreSQL, then measures, each as a child process:

  raw pg_dump      pg_dump -Fc -Z0 > /dev/null
  dbcrate backup   dbcrate backup (zstd + age) to a local target
  raw pg_restore   pg_restore --single-transaction -j1 of the plain (-Fc -Z0) dump file
  dbcrate restore  dbcrate restore --latest --to a new database

and prints wall time, CPU time (user+sys of the process and its children), peak RSS of
the top process (VmHWM), and the ratios dbcrate/raw. No thresholds are asserted.

Usage: python bench/backup.py [--size-gb 1.0] [--major 17] [--level N] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dbcrate.sandbox import TempPostgres

DBCRATE = str(Path(sys.executable).with_name("dbcrate"))


@dataclass
class Run:
    name: str
    wall: float
    cpu: float
    rss_mib: float


def measure(name: str, argv: list[str], env: dict[str, str], stdout: int | None = None) -> Run:
    """Run argv, polling the top process's VmHWM; CPU comes from wait4 (incl. children)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.PIPE)
    peak = [0]
    done = threading.Event()

    def poll() -> None:
        path = Path(f"/proc/{proc.pid}/status")
        while not done.is_set():
            try:
                for line in path.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
            except (OSError, ValueError):
                pass
            time.sleep(0.02)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    t.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{name} failed ({proc.returncode}): {err.decode(errors='replace')}")
    return Run(name, wall, usage.ru_utime + usage.ru_stime, peak[0] / 1024)


def median(runs: list[Run]) -> Run:
    """The run with the median wall time, with the largest peak RSS of all runs."""
    ordered = sorted(runs, key=lambda r: r.wall)
    mid = ordered[len(ordered) // 2]
    return Run(mid.name, mid.wall, mid.cpu, max(r.rss_mib for r in runs))


def generate(pg: TempPostgres, db: str, size_gb: float) -> None:
    """pgbench tables plus a table with text, jsonb and bytea, to >= size_gb on disk."""
    pg.create_database(db)
    scale = max(1, int(size_gb * 40))
    env = {**os.environ, "PGPASSWORD": pg.password}
    print(f"generating: pgbench -i -s {scale} ...", flush=True)
    subprocess.run([str(pg.bin_dir / "pgbench"), "-i", "-q", "-s", str(scale), "-h", pg.host,
                    "-p", str(pg.port), "-U", pg.user, db], env=env, check=True,
                   stdout=subprocess.DEVNULL)
    rows = int(size_gb * 1_200_000)
    print(f"generating: {rows} rows of text/jsonb/bytea ...", flush=True)
    with pg.connect(db) as conn:
        conn.execute(
            "CREATE TABLE docs (id bigint PRIMARY KEY, title text, body jsonb, blob bytea)"
        )
        conn.execute(f"""
            INSERT INTO docs
            SELECT i, 'document ' || i || ' ' || md5(i::text),
                   jsonb_build_object('id', i, 'tags', jsonb_build_array('a' || i % 97, 'b'),
                                      'text', md5((i * 3)::text) || ' lorem ipsum dolor ' ||
                                              md5((i * 5)::text) || ' sit amet ' || i),
                   sha256(int8send(i)) || sha256(int8send(i * 7)) || sha256(int8send(i * 11))
            FROM generate_series(1, {rows}) AS i""")
        conn.execute("VACUUM ANALYZE")
        size = conn.execute("SELECT pg_database_size(current_database())").fetchone()
    assert size is not None
    print(f"database size: {size[0] / 1e9:.2f} GB", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--major", type=int, default=17)
    ap.add_argument("--level", type=int, default=None, help="zstd level (default: dbcrate's)")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--repeat", type=int, default=3,
                    help="runs of each measurement, alternating raw and dbcrate; medians "
                    "are reported (this 2-core VM is noisy)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dbcrate-bench-"))
    try:
        with TempPostgres(major=args.major, settings={"max_wal_size": "4GB"}) as pg:
            generate(pg, "bench", args.size_gb)
            env = {**os.environ, "PGPASSWORD": pg.password}
            conn = ["-h", pg.host, "-p", str(pg.port), "-U", pg.user]
            bindir = pg.bin_dir
            ident = work / "identity.txt"
            recipient = subprocess.run([DBCRATE, "keygen", "-o", str(ident)], check=True,
                                       capture_output=True, text=True).stdout.strip()
            pw = work / "pw"
            pw.write_text(pg.password)
            pw.chmod(0o600)
            level = f"compression_level = {args.level}\n" if args.level else ""
            cfg = work / "dbcrate.toml"
            cfg.write_text(f"""[backup]
recipients = ["{recipient}"]
compression = "zstd"
{level}
[backup.targets.local]
type = "local"
path = "{work / 'backups'}"

[[backup.jobs]]
name = "bench"
url = "{pg.url('bench')}"
password_file = "{pw}"
pg_bin_dir = "{bindir}"
""")
            denv = {**os.environ, "DBCRATE_CONFIG": str(cfg)}
            dump_file = work / "plain.dump"

            # warm the server's cache once so both measured dumps see the same state
            subprocess.run([str(bindir / "pg_dump"), "-Fc", "-Z0", *conn, "-f", str(dump_file),
                            "bench"], env=env, check=True)
            dumps: dict[str, list[Run]] = {"raw": [], "dbcrate": []}
            restores: dict[str, list[Run]] = {"raw": [], "dbcrate": []}
            for _ in range(args.repeat):
                dumps["raw"].append(measure(
                    "raw pg_dump -Fc -Z0 > /dev/null",
                    [str(bindir / "pg_dump"), "-Fc", "-Z0", *conn, "bench"], env,
                    stdout=subprocess.DEVNULL))
                dumps["dbcrate"].append(measure(
                    "dbcrate backup (zstd+age, local)",
                    [DBCRATE, "backup", "bench", "--no-progress"], denv,
                    stdout=subprocess.DEVNULL))
            for i in range(args.repeat):
                pg.create_database(f"raw_restore_{i}")
                restores["raw"].append(measure(
                    "raw pg_restore -j1 (plain file)",
                    [str(bindir / "pg_restore"), "--single-transaction", "--exit-on-error",
                     *conn, "-d", f"raw_restore_{i}", str(dump_file)], env))
                pg.drop_database(f"raw_restore_{i}")
                restores["dbcrate"].append(measure(
                    "dbcrate restore --latest --to new db",
                    [DBCRATE, "restore", "bench", "--latest", "--no-progress",
                     "--to", pg.url(f"dbcrate_restore_{i}"), "--identity", str(ident)],
                    denv, stdout=subprocess.DEVNULL))
                pg.drop_database(f"dbcrate_restore_{i}")
            runs = [median(dumps["raw"]), median(dumps["dbcrate"]),
                    median(restores["raw"]), median(restores["dbcrate"])]
            stored = sum(p.stat().st_size for p in (work / "backups").rglob("*.age"))
            stored //= args.repeat  # one object per backup run
            plain = dump_file.stat().st_size
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\ndump size {plain / 1e9:.2f} GB, stored {stored / 1e9:.2f} GB "
          f"({stored / plain:.1%})")
    print(f"medians of {args.repeat} alternating runs each")
    print(f"{'':40} {'wall s':>8} {'cpu s':>8} {'peak RSS MiB':>13}")
    for r in runs:
        print(f"{r.name:40} {r.wall:8.2f} {r.cpu:8.2f} {r.rss_mib:13.1f}")
    b = runs[1].wall / runs[0].wall
    rs = runs[3].wall / runs[2].wall
    print(f"\nbackup  / raw pg_dump    wall ratio: {b:.3f}  (target <= 1.10); "
          f"dbcrate peak RSS {runs[1].rss_mib:.1f} MiB (target <= 100)")
    print(f"restore / raw pg_restore wall ratio: {rs:.3f}  (target <= 1.10); "
          f"dbcrate peak RSS {runs[3].rss_mib:.1f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
