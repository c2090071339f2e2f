"""Benchmark: dbcrate backup/restore against the raw PostgreSQL tools, in one run.

For each data set (bench/datasets.py: ``current`` = pgbench + docs, ``app`` =
application-like rows) builds a database of at least --size-gb GB on an embedded
PostgreSQL, then measures, each as a child process, in pairs (each pair alternates which
side runs first; a CHECKPOINT and a sync precede every timed run):

  raw pg_dump      pg_dump -Fc -Z0 > /dev/null
  dbcrate backup   dbcrate backup (zstd + age) to a local target
  raw pg_restore   createdb, then pg_restore --single-transaction -j1 of the plain (-Fc -Z0)
                   dump file into it
  dbcrate restore  dbcrate restore --latest --to a new database (which it creates)

and prints the median of the per-pair wall ratios dbcrate/raw (targets: backup <= 1.10,
restore <= 1.00), wall and CPU times, dbcrate's own CPU (its process, without pg_dump)
per GB, peak RSS (VmHWM), the CPU per GB of each pipeline stage (bench/stages.py), the
row counter's share of the backup's CPU, start-up time, and once (first data set) a
backup to and a restore from S3 (moto) with the bytes the restore fetched over the
stored size. Figures go to bench/results/latest.json; `make bench` compares them with
bench/baseline.json (bench/compare.py). No thresholds are asserted.

Usage: python bench/backup.py [--size-gb 1.0] [--repeat 5] [--datasets current,app]
                              [--major 17] [--level N] [--no-s3] [--keep]
Peak RSS must not grow with size: run once more with --size-gb 4 and compare.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets
import installed
import s3
import stages

from dbcrate.engines.postgres.archive import RowCounter
from dbcrate.sandbox import TempPostgres

DBCRATE = str(Path(sys.executable).with_name("dbcrate"))
RESULTS = Path(__file__).resolve().parent / "results"
TICK = os.sysconf("SC_CLK_TCK")


@dataclass
class Run:
    wall: float
    cpu: float  # user+sys of the process and its children
    own_cpu: float  # user+sys of the top process alone (last /proc sample)
    rss_mib: float

    def __add__(self, then: Run) -> Run:
        """Two commands run one after the other, as one."""
        return Run(self.wall + then.wall, self.cpu + then.cpu, self.own_cpu + then.own_cpu,
                   max(self.rss_mib, then.rss_mib))


def measure(argv: list[str], env: dict[str, str], stdout: int | None = None) -> Run:
    """Run argv, polling the top process's VmHWM and CPU; total CPU comes from wait4."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=stdout, stderr=subprocess.PIPE)
    peak, own = [0], [0.0]
    done = threading.Event()

    def poll() -> None:
        status, stat = Path(f"/proc/{proc.pid}/status"), Path(f"/proc/{proc.pid}/stat")
        while not done.is_set():
            try:
                for line in status.read_text().splitlines():
                    if line.startswith("VmHWM:"):
                        peak[0] = max(peak[0], int(line.split()[1]))
                fields = stat.read_text().rsplit(")", 1)[1].split()
                own[0] = (int(fields[11]) + int(fields[12])) / TICK
            except (OSError, ValueError, IndexError):
                pass
            time.sleep(0.02)

    t = threading.Thread(target=poll, daemon=True)
    t.start()
    err = proc.stderr.read() if proc.stderr else b""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    done.set()
    t.join()
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{argv[0]} failed ({code}): {err.decode(errors='replace')}")
    return Run(wall, usage.ru_utime + usage.ru_stime, own[0], peak[0] / 1024)


def config(work: Path, pg: TempPostgres, dbs: list[str], recipient: str,
           level: int | None, s3_url: str | None) -> Path:
    pw = work / "pw"
    pw.write_text(pg.password)
    pw.chmod(0o600)
    lines = [f'[backup]\nrecipients = ["{recipient}"]\ncompression = "zstd"',
             f"compression_level = {level}" if level else "",
             f'\n[backup.targets.local]\ntype = "local"\npath = "{work / "backups"}"']
    if s3_url:
        lines.append(f'\n[backup.targets.s3]\ntype = "s3"\nendpoint = "{s3_url}"\n'
                     'bucket = "bench"\nregion = "us-east-1"\naccess_key = "bench"\n'
                     'secret_key = "bench"')
    for db in dbs:
        lines.append(f'\n[[backup.jobs]]\nname = "{db}"\nurl = "{pg.url(db)}"\n'
                     f'password_file = "{pw}"\npg_bin_dir = "{pg.bin_dir}"\n'
                     'targets = ["local"]')
        if s3_url and db == dbs[0]:
            lines.append(f'\n[[backup.jobs]]\nname = "{db}_s3"\nurl = "{pg.url(db)}"\n'
                         f'password_file = "{pw}"\npg_bin_dir = "{pg.bin_dir}"\n'
                         'targets = ["s3"]')
    cfg = work / "dbcrate.toml"
    cfg.write_text("\n".join(lines) + "\n")
    return cfg


def pairs(raw: list[Run], ours: list[Run]) -> dict[str, float]:
    """Median of the per-pair wall ratios, and medians of the rest."""
    return {
        "ratio": statistics.median(o.wall / r.wall for r, o in zip(raw, ours, strict=True)),
        "raw_wall_s": statistics.median(r.wall for r in raw),
        "wall_s": statistics.median(o.wall for o in ours),
        "raw_cpu_s": statistics.median(r.cpu for r in raw),
        "cpu_s": statistics.median(o.cpu for o in ours),
        "own_cpu_s": statistics.median(o.own_cpu for o in ours),
        "peak_rss_mib": max(o.rss_mib for o in ours),
    }


def counter_cpu(dump: Path) -> float:
    """CPU seconds of the row counter stage over the dump, in this process: its own
    ``cpu_seconds`` (thread CPU around each ``feed``), without reading the file, which the
    backup's read stage already pays for."""
    counter = RowCounter()
    with open(dump, "rb", buffering=0) as f:
        for _ in counter(iter(lambda: f.read(1 << 20), b"")):
            pass
    return counter.cpu_seconds


def paired(i: int) -> tuple[str, str]:
    """The order of pair ``i``: raw first in even pairs, dbcrate first in odd ones (the
    second run of a pair meets the first one's dirty pages and warmed caches)."""
    return ("raw", "dbcrate") if i % 2 == 0 else ("dbcrate", "raw")


def quiesce(pg: TempPostgres) -> None:
    """Before a timed run: the server's dirty buffers written (CHECKPOINT) and the
    kernel's written back (sync), so no run pays for the one before it."""
    pg.psql("CHECKPOINT")
    os.sync()


def startup(env: dict[str, str]) -> float:
    """Wall seconds of `dbcrate --version` (the best of five)."""
    return min(measure([DBCRATE, "--version"], env, subprocess.DEVNULL).wall for _ in range(5))


def bench_dataset(name: str, pg: TempPostgres, denv: dict[str, str], work: Path,
                  args: argparse.Namespace, recipient: str, ident: Path) -> dict[str, float]:
    env = {**os.environ, "PGPASSWORD": pg.password}
    conn = ["-h", pg.host, "-p", str(pg.port), "-U", pg.user]
    dump_file = work / f"{name}.dump"
    # warms the server's cache once, so both measured dumps see the same state
    subprocess.run([str(pg.bin_dir / "pg_dump"), "-Fc", "-Z0", *conn, "-f", str(dump_file),
                    name], env=env, check=True)
    gb = dump_file.stat().st_size / 1e9
    raw_d: list[Run] = []
    ours_d: list[Run] = []
    raw_r: list[Run] = []
    ours_r: list[Run] = []
    for i in range(args.repeat):
        print(f"[{name}] backup pair {i + 1}/{args.repeat}", flush=True)
        for side in paired(i):
            quiesce(pg)
            if side == "raw":
                raw_d.append(measure([str(pg.bin_dir / "pg_dump"), "-Fc", "-Z0", *conn, name],
                                     env, subprocess.DEVNULL))
            else:
                ours_d.append(measure([DBCRATE, "backup", name, "--no-progress"], denv,
                                      subprocess.DEVNULL))
    for i in range(args.repeat):
        print(f"[{name}] restore pair {i + 1}/{args.repeat}", flush=True)
        for side in paired(i):
            if side == "raw":  # createdb + pg_restore: the same work as ours
                quiesce(pg)
                made = measure([str(pg.bin_dir / "createdb"), *conn, f"raw_restore_{i}"], env)
                raw_r.append(made + measure(
                    [str(pg.bin_dir / "pg_restore"), "--single-transaction",
                     "--exit-on-error", *conn, "-d", f"raw_restore_{i}", str(dump_file)], env))
                pg.drop_database(f"raw_restore_{i}")
            else:
                quiesce(pg)
                ours_r.append(measure([DBCRATE, "restore", name, "--latest", "--no-progress",
                                       "--to", pg.url(f"dbcrate_restore_{i}"), "--identity",
                                       str(ident)], denv, subprocess.DEVNULL))
                pg.drop_database(f"dbcrate_restore_{i}")
    out = {f"backup_{k}": v for k, v in pairs(raw_d, ours_d).items()}
    out |= {f"restore_{k}": v for k, v in pairs(raw_r, ours_r).items()}
    out["dump_gb"] = gb
    objects = list((work / "backups" / name).rglob("*.pgdump.zst.age"))
    out["stored_ratio"] = sum(p.stat().st_size for p in objects) / len(objects) / 1e9 / gb
    out["backup_own_cpu_s_per_gb"] = out["backup_own_cpu_s"] / gb
    out["restore_own_cpu_s_per_gb"] = out["restore_own_cpu_s"] / gb
    out["row_counter_pct_of_backup_cpu"] = 100 * counter_cpu(dump_file) / out["backup_cpu_s"]
    if not args.no_stages:
        print(f"[{name}] stage CPU ...", flush=True)
        out |= {f"stage_{k}_cpu_s_per_gb": v
                for k, v in stages.measure(dump_file, recipient, args.level).items()}
    return out


def bench_s3(name: str, pg: TempPostgres, denv: dict[str, str], ident: Path,
             proxy: s3.CountingProxy, s3_url: str) -> dict[str, float]:
    """A backup to S3 (peak RSS) and a restore from it, counting the bytes fetched."""
    s3.make_bucket(s3_url, "bench")
    print(f"[{name}] S3 backup and restore", flush=True)
    b = measure([DBCRATE, "backup", f"{name}_s3", "--no-progress"], denv, subprocess.DEVNULL)
    stored = s3.stored_size(s3_url, "bench")  # every object of the one backup
    proxy.reset()
    r = measure([DBCRATE, "restore", f"{name}_s3", "--latest", "--no-progress", "--to",
                 pg.url("s3_restore"), "--identity", str(ident)], denv, subprocess.DEVNULL)
    fetched = proxy.fetched
    pg.drop_database("s3_restore")
    return {"s3_backup_wall_s": b.wall, "s3_backup_peak_rss_mib": b.rss_mib,
            "s3_restore_wall_s": r.wall, "s3_restore_peak_rss_mib": r.rss_mib,
            "s3_restore_fetched_over_stored": fetched / stored, "s3_stored_mb": stored / 1e6}


def report(figures: dict[str, float], names: list[str], repeat: int) -> None:
    print(f"\nmedians of {repeat} alternating pairs (ratios: median of the per-pair ratios)")
    for name in names:
        f = {k.split(".", 1)[1]: v for k, v in figures.items() if k.startswith(name + ".")}
        print(f"\n== {name}: dump {f['dump_gb']:.2f} GB, stored {f['stored_ratio']:.1%}")
        print(f"{'':28} {'raw wall':>9} {'wall':>8} {'ratio':>7} {'cpu':>7} "
              f"{'own cpu/GB':>10} {'RSS MiB':>8}")
        for op, target in (("backup", 1.10), ("restore", 1.00)):
            print(f"{op + ' (zstd+age, local)':28} {f[op + '_raw_wall_s']:9.2f} "
                  f"{f[op + '_wall_s']:8.2f} {f[op + '_ratio']:7.3f} {f[op + '_cpu_s']:7.2f} "
                  f"{f[op + '_own_cpu_s_per_gb']:10.2f} {f[op + '_peak_rss_mib']:8.1f}"
                  f"   target <= {target:.2f}")
        stage = [(k[6:-13], v) for k, v in f.items() if k.startswith("stage_")]
        if stage:
            print("CPU s/GB by stage: " + ", ".join(f"{k} {v:.2f}" for k, v in stage))
        print(f"row counter: {f['row_counter_pct_of_backup_cpu']:.1f}% of the backup's CPU")
        if "s3_restore_fetched_over_stored" in f:
            print(f"S3: backup {f['s3_backup_wall_s']:.2f}s RSS {f['s3_backup_peak_rss_mib']:.1f}"
                  f" MiB (target <= 100); restore {f['s3_restore_wall_s']:.2f}s, bytes fetched"
                  f" = stored x {f['s3_restore_fetched_over_stored']:.3f}")
    print(f"\nstart-up (dbcrate --version): {figures['startup_s']:.3f}s (target < 0.15)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--major", type=int, default=17)
    ap.add_argument("--level", type=int, default=None, help="zstd level (default: dbcrate's)")
    ap.add_argument("--repeat", type=int, default=5, help="alternating pairs (at least 5)")
    ap.add_argument("--datasets", default="current,app")
    ap.add_argument("--no-s3", action="store_true")
    ap.add_argument("--no-stages", action="store_true")
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--results", type=Path, default=RESULTS / "latest.json")
    args = ap.parse_args()
    installed.compile_sources()
    names = [n for n in args.datasets.split(",") if n]
    if unknown := [n for n in names if n not in datasets.DATASETS]:
        ap.error(f"unknown data set(s) {unknown}; known: {sorted(datasets.DATASETS)}")
    work = Path(tempfile.mkdtemp(prefix="dbcrate-bench-"))
    figures: dict[str, float] = {}
    try:
        with TempPostgres(major=args.major, settings={"max_wal_size": "4GB"}) as pg, \
                (s3.moto_server(work / "moto.log") if not args.no_s3
                 else _nothing()) as moto:
            for name in names:
                datasets.DATASETS[name](pg, name, args.size_gb)
                print(f"[{name}] database size: {datasets.size_of(pg, name) / 1e9:.2f} GB")
            ident = work / "identity.txt"
            recipient = subprocess.run([DBCRATE, "keygen", "-o", str(ident)], check=True,
                                       capture_output=True, text=True).stdout.strip()
            s3_url = moto[0] if moto else None
            cfg = config(work, pg, names, recipient, args.level, s3_url)
            denv = {**os.environ, "DBCRATE_CONFIG": str(cfg)}
            figures["startup_s"] = startup(denv)
            for name in names:
                for k, v in bench_dataset(name, pg, denv, work, args, recipient,
                                          ident).items():
                    figures[f"{name}.{k}"] = v
            if moto and s3_url:
                for k, v in bench_s3(names[0], pg, denv, ident, moto[1], s3_url).items():
                    figures[f"{names[0]}.{k}"] = v
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    report(figures, names, args.repeat)
    meta = {"size_gb": args.size_gb, "repeat": args.repeat, "major": args.major,
            "datasets": names, "cpus": os.cpu_count(), "host": platform.node(),
            "at": datetime.now(UTC).isoformat(timespec="seconds")}
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.write_text(json.dumps({"meta": meta, "figures": figures}, indent=1,
                                       sort_keys=True) + "\n")
    print(f"figures written to {args.results}")
    return 0


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


if __name__ == "__main__":
    sys.exit(main())
