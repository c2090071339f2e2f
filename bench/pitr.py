"""Benchmark: PITR against the raw tools, paired (alternating runs, medians).

On a cluster whose archive_command is ``dbcrate wal-push`` (tests/servers/pitr.py's set-up:
the server and dbcrate run as the sandbox user when this runs as root), measures:

  base backup   dbcrate backup of a physical job (zstd + age, local; includes waiting for
                the stop segment to be archived)  vs  raw pg_dump -Fc -Z0 > /dev/null
                (goal <= 1.0x)
  wal-push      dbcrate wal-push of one 16 MiB segment  vs  zstd -1 | age > /dev/null
                (goal <= 2x)
  replay        dbcrate restore --pitr --to-end over ~--segments segments  vs  the plaintext
                base untarred + pg_verifybackup + replay with restore_command = cp
                (goal <= 1.5x)

The data set (--dataset) decides what a logical dump costs: ``wide`` (one table of 0.3 kB
text rows, cheap for pg_dump) or one of bench/datasets.py's (``current``: the backup
bench's own data). A base backup is the whole cluster, the dump is that one database.

Each pair alternates which side runs first, and every timed run starts after ``sync``, so
neither pays for the write-back of the other's gigabyte (a restore that followed the raw
replay's untar ran up to 2x slower for that alone).

Usage: python bench/pitr.py [--size-gb 1.0] [--segments 30] [--major 17] [--repeat 3]
                            [--dataset wide|current|app]
(run from the repository root with PYTHONPATH=src:.)
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets
from backup import paired
from tests.servers.pitr import JOB, PitrCluster


def median(values: list[float]) -> float:
    return sorted(values)[len(values) // 2]


def generate(c: PitrCluster, size_gb: float) -> None:
    rows = int(size_gb * 3_000_000)  # ~0.34 kB of heap per row
    print(f"generating {rows} rows ...", flush=True)
    c.sql("CREATE TABLE IF NOT EXISTS bench (id bigint, body text, blob bytea)")
    c.sql(f"INSERT INTO bench SELECT i, repeat(md5(i::text), 8), sha256(int8send(i))"
          f" FROM generate_series(1, {rows}) i")
    size = c.sql("SELECT pg_database_size('postgres')")[0][0]
    print(f"database size: {size / 1e9:.2f} GB", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-gb", type=float, default=1.0)
    ap.add_argument("--segments", type=int, default=30)
    ap.add_argument("--major", type=int, default=17)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--dataset", default="wide", choices=["wide", *datasets.DATASETS])
    args = ap.parse_args()
    # an installed dbcrate has bytecode; the server's user cannot write __pycache__ into
    # this checkout, so without this every wal-push would compile its modules again
    c = PitrCluster(args.major)
    subprocess.run([c.python, "-m", "compileall", "-q",
                    str(Path(__file__).resolve().parents[1] / "src")], check=True,
                   stdout=subprocess.DEVNULL)
    c.server._settings["max_wal_size"] = "8GB"
    c.start()
    try:
        db = "postgres"
        c.sql("CREATE TABLE IF NOT EXISTS bench (id bigint, body text, blob bytea)")
        if args.dataset == "wide":
            generate(c, args.size_gb)
        else:
            db = args.dataset
            datasets.DATASETS[db](c.server, db, args.size_gb)
            print(f"database size: {datasets.size_of(c.server, db) / 1e9:.2f} GB", flush=True)
        c.sql("CHECKPOINT")
        c.switch_and_wait(600)
        s = c.server
        env = {**os.environ, "PGPASSWORD": s.password}
        dump = [str(s.bin_dir / "pg_dump"), "-Fc", "-Z0", "-h", s.host, "-p", str(s.port),
                "-U", s.user, db]
        base: dict[str, list[float]] = {"raw": [], "dbcrate": []}
        for i in range(args.repeat):
            for side in paired(i):
                os.sync()  # neither run pays for the other's write-back
                t0 = time.perf_counter()
                if side == "raw":
                    subprocess.run(dump, check=True, stdout=subprocess.DEVNULL, env=env)
                else:
                    c.dbcrate("backup", JOB, check=True, timeout=3600)
                base[side].append(time.perf_counter() - t0)

        # replay: a base, then ~N segments of WAL (full ones, written by inserts)
        c.dbcrate("backup", JOB, check=True, timeout=3600)
        print(f"writing ~{args.segments} segments of WAL ...", flush=True)
        c.sql(f"INSERT INTO bench SELECT i, repeat(md5(i::text), 8), sha256(int8send(i))"
              f" FROM generate_series(1, {args.segments * 48_000}) i")
        c.switch_and_wait(600)
        plain = c.new_dir().parent / "plain"
        plain.mkdir()
        c.chown(plain)
        names = sorted({p.name.split("-", 1)[0] for p in
                        (c.store / JOB / "wal" / "00000001").iterdir()})
        for name in names:
            c.dbcrate("wal-fetch", JOB, name, str(plain / name), "--identity",
                      str(c.identity), check=True)

        # wal-push: one full segment of those (a switched one is mostly zeros), pushed
        # again and again as archive_command runs it (its object removed each time)
        segments = [n for n in names if len(n) == 24]
        seg_name = segments[len(segments) // 2]
        seg = plain / seg_name
        recipient = c.config.read_text().split('recipients = ["', 1)[1].split('"', 1)[0]
        push: dict[str, list[float]] = {"raw": [], "dbcrate": []}
        for i in range(max(5, args.repeat)):
            for side in paired(i):
                for obj in c.wal_objects(seg_name):
                    obj.unlink()
                os.sync()
                t0 = time.perf_counter()
                if side == "raw":
                    subprocess.run(["bash", "-c", f"zstd -1 -c < {seg} | age -r {recipient} "
                                    "> /dev/null"], check=True)
                else:
                    subprocess.run([*c.prefix, "env", "-i",
                                    *(f"{k}={v}" for k, v in c.env().items()), c.python, "-m",
                                    "dbcrate", "wal-push", JOB, str(seg), "--config",
                                    str(c.config)], check=True, cwd=c.dir)
                push[side].append(time.perf_counter() - t0)

        tar = plain.parent / "base.tar"
        with tar.open("wb") as out:
            subprocess.run([*c.prefix, "env", "-i", *(f"{k}={v}" for k, v in c.env().items()),
                            c.python, "-m", "dbcrate", "--config", str(c.config), "cat", JOB,
                            "--latest", "--identity", str(c.identity)], stdout=out, check=True)
        c.chown(tar.parent)
        replay: dict[str, list[float]] = {"raw": [], "dbcrate": []}
        for i in range(args.repeat):
            for side in paired(i):
                d = c.new_dir()
                os.sync()
                t0 = time.perf_counter()
                if side == "raw":
                    raw_replay(c, tar, d, plain)
                else:
                    c.restore_json(c.restore("--to-end", "--data-dir", str(d), "--json"))
                replay[side].append(time.perf_counter() - t0)
                shutil.rmtree(d.parent, ignore_errors=True)
    finally:
        c.stop()
    print(f"\nmedians of {args.repeat}+ paired runs (wall seconds)")
    for what, runs, goal in (("base backup vs pg_dump -Fc -Z0", base, 1.0),
                             ("wal-push vs zstd -1 | age", push, 2.0),
                             ("restore --pitr --to-end vs cp replay", replay, 1.5)):
        raw, ours = median(runs["raw"]), median(runs["dbcrate"])
        print(f"{what:40} raw {raw:7.2f}  dbcrate {ours:7.2f}  ratio {ours / raw:5.2f}"
              f"  (goal <= {goal})")
    return 0


def raw_replay(c: PitrCluster, tar: Path, d: Path, plain: Path) -> None:
    """Untar the plaintext base, pg_verifybackup, replay with restore_command = cp."""
    bindir = c.server.bin_dir
    script = (f"set -e; mkdir -m 700 {d}; tar -x -C {d} -f {tar}; "
              f"{bindir}/pg_verifybackup -n -q {d}; touch {d}/recovery.signal; "
              f"{bindir}/pg_ctl -D {d} -l {d}.log -w -t 3600 start -o \"-c hot_standby=off "
              f"-c listen_addresses='' -c unix_socket_directories='{d.parent}' "
              f"-c archive_mode=off -c restore_command='cp {plain}/%f %p'\"; "
              f"while [ -e {d}/recovery.signal ]; do sleep 0.05; done; "
              f"{bindir}/pg_ctl -D {d} -m fast -w stop")
    subprocess.run([*c.prefix, "bash", "-c", script], check=True, capture_output=True)


if __name__ == "__main__":
    raise SystemExit(main())
