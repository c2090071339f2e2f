"""Bounds the bench relies on (issue 15), checked as outcomes, not timings: what a
command loads at start-up, and how large the pieces of a decoded stream get."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from dbcrate import codecs
from dbcrate.streams import apply

SRC = Path(__file__).resolve().parents[2] / "src"

#: what building the command line (every command's parser) must not load: each is
#: loaded by the command that needs it, when it runs
HEAVY = ("cryptography", "psycopg", "boto3", "zstandard", "dbcrate.operations.backup",
         "dbcrate.operations.restore", "dbcrate.pgbin", "dbcrate.signing")


def test_parser_loads_no_heavy_module() -> None:
    code = ("import sys\nfrom dbcrate.cli.main import build_parser\nbuild_parser()\n"
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == ""


def test_a_logical_backup_loads_neither_psycopg_nor_signing() -> None:
    """The backup and restore pipelines and the PostgreSQL engine (its URL parsing
    included) import without psycopg (the probe asks psql) and without ``signing`` (only
    for a job that signs, MACs or checks signatures of its manifests)."""
    code = ("import sys\nimport dbcrate.operations.backup\nimport dbcrate.operations.restore\n"
            "import dbcrate.engines.postgres.engine\n"
            "from dbcrate.engines.postgres.url import PgTarget\n"
            "PgTarget.parse('postgresql://u:p%2F@h:5432/db?sslmode=require').libpq_conninfo()\n"
            "print(','.join(m for m in ('psycopg', 'dbcrate.signing', "
            "'dbcrate.operations.pitr.base') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                         capture_output=True, text=True).stdout.strip()
    assert out == ""


def test_zstd_decoder_pieces_stay_small_on_padded_rows() -> None:
    # pgbench_accounts-like rows: 84 blanks each, ~100:1 at zstd level 1
    data = b"".join(b"%d\t%d\t0\t%s\n" % (i, i // 100000 + 1, b" " * 84)
                    for i in range(1, 300_001))
    encoder = codecs.make("zstd", level=1).encoder()
    stored = encoder.feed(data) + encoder.flush()
    pieces = list(apply((stored[i : i + 65536] for i in range(0, len(stored), 65536)),
                        [codecs.make("zstd").decoder()]))
    assert b"".join(pieces) == data
    # the first piece is decoded before the ratio is known; after it, about 512 KiB each
    assert max(len(p) for p in pieces[1:]) <= 1 << 20
