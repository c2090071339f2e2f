"""Benchmark: the row counter's CPU per GB of dump (engines/postgres/archive.py), on the C
chunk walk (``_chunkwalk.c``) and on the Python path it falls back to.

Builds the bench's data sets (bench/datasets.py: ``current`` = pgbench + docs, ``app`` =
application-like rows of ~300-400 bytes) on an embedded PostgreSQL and dumps each with
``pg_dump -Fc -Z0`` into --dir (kept: a second run reuses the dumps), then feeds every dump
through ``RowCounter`` in 1 MiB buffers (as bench/backup.py's ``counter_cpu``), the two
paths alternating, and prints the median and best CPU seconds per GB of each. The counts
are checked to agree.

CPU time depends on the machine's load; instruction counts do not. For those, count one
dump under callgrind with each path and with no counter at all (the difference is the
counter's), e.g.

  valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
      python bench/counter_cost.py --one DUMP c       # or: python, none

Usage: python bench/counter_cost.py [--dir DIR] [--size-gb 0.7] [--repeat 5]
       python bench/counter_cost.py --one DUMP {c,python,none}
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import datasets

from dbcrate.engines.postgres.archive import NATIVE_WALK, RowCounter
from dbcrate.sandbox import TempPostgres

CHUNK = 1 << 20


def count(dump: Path, native: bool) -> RowCounter:
    """The dump through a counter in 1 MiB buffers (``cpu_seconds``: its feeds alone)."""
    counter = RowCounter(native=native)
    with open(dump, "rb", buffering=0) as f:
        for _ in counter(iter(lambda: f.read(CHUNK), b"")):
            pass
    return counter


def build(work: Path, size_gb: float, major: int) -> list[Path]:
    """A ``-Fc -Z0`` dump of each data set in ``work``, made unless it is there already."""
    dumps = [work / f"{name}.dump" for name in datasets.DATASETS]
    missing = [d for d in dumps if not d.exists()]
    if missing:
        work.mkdir(parents=True, exist_ok=True)
        with TempPostgres(major=major, settings={"max_wal_size": "4GB"}) as pg:
            for dump in missing:
                datasets.DATASETS[dump.stem](pg, dump.stem, size_gb)
                print(f"[{dump.stem}] pg_dump -Fc -Z0 ...", flush=True)
                subprocess.run([str(pg.bin_dir / "pg_dump"), "-Fc", "-Z0", "-f",
                                str(dump) + ".part", "-d", pg.url(dump.stem)],
                               env={**os.environ, "PGPASSWORD": pg.password}, check=True)
                Path(str(dump) + ".part").rename(dump)
    return dumps


def one(dump: Path, path: str) -> None:
    """Count ``dump`` once (``c``, ``python``) or only read it (``none``): for callgrind."""
    if path == "none":
        with open(dump, "rb", buffering=0) as f:
            for _ in iter(lambda: f.read(CHUNK), b""):
                pass
        return
    counter = count(dump, native=path == "c")
    print(sum(counter.counts().values()), "rows")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, default=Path("/tmp/dbcrate-counter-bench"))
    ap.add_argument("--size-gb", type=float, default=0.7)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--major", type=int, default=17)
    ap.add_argument("--one", nargs=2, metavar=("DUMP", "PATH"))
    args = ap.parse_args()
    if args.one:
        one(Path(args.one[0]), args.one[1])
        return
    if NATIVE_WALK is None:
        sys.exit("the C chunk walk is not built (pip install -e . or setup.py build_ext -i)")
    for dump in build(args.dir, args.size_gb, args.major):
        gb = dump.stat().st_size / 1e9
        cpu: dict[str, list[float]] = {"c": [], "python": []}
        counts = set()
        for _ in range(args.repeat):
            for path in cpu:
                counter = count(dump, native=path == "c")
                cpu[path].append(counter.cpu_seconds / gb)
                counts.add(tuple(sorted(counter.counts().items())))
        assert len(counts) == 1, "the two paths disagree"
        rows = sum(n for _, n in next(iter(counts)))
        print(f"\n== {dump.stem}: {gb:.3f} GB, {rows} rows ({1e9 * gb / rows:.0f} B/row)")
        for path, v in cpu.items():
            print(f"{path:>7}: {statistics.median(v):.4f} s/GB median, {min(v):.4f} best "
                  f"of {args.repeat}")
        ratio = statistics.median(cpu["python"]) / statistics.median(cpu["c"])
        print(f"python/c: {ratio:.1f}x")


if __name__ == "__main__":
    main()
