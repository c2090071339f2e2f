"""The Redis verification (docs/verify.md): redis-check-rdb, then a TempRedis load."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from dbcrate.engines.redis import verify as redisverify
from dbcrate.errors import IntegrityError
from dbcrate.operations.pipeline import KeyMaterial
from dbcrate.operations.restore import Located, plaintext
from dbcrate.operations.verdict import FAIL, PASS, SKIP, Check


def verify_redis(located: Located, keys: KeyMaterial, report: Any,
                 parent: Path | None) -> None:
    """redis-check-rdb passes; the loaded keys equal the keys the RDB holds less those
    already expired."""
    t0 = time.monotonic()
    try:
        found = redisverify.verify(plaintext(located, keys), str(parent) if parent else None)
    except IntegrityError as e:
        report.checks.append(Check("redis_check_rdb", FAIL, e.message))
        return
    report.restore_seconds = round(time.monotonic() - t0, 3)
    report.server = found.server
    report.checks.append(Check("redis_check_rdb", PASS if found.check_ok else FAIL,
                               found.detail))
    if not found.check_ok:
        return
    total = sum(found.loaded.values())
    report.keys = total
    if found.expected_keys is None:
        report.checks.append(Check("key_counts", SKIP, f"{total} keys loaded; "
                                   "redis-check-rdb reported no key count"))
    else:
        ok = total == found.expected_keys
        report.checks.append(Check(
            "key_counts", PASS if ok else FAIL,
            f"{total} keys loaded, {found.expected_keys} in the RDB (less expired)"
            + ("" if ok else ": they differ") + "; per db: "
            + ", ".join(f"db{db}={n}" for db, n in sorted(found.loaded.items()))))
