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
    scanned = found.scanned
    if scanned is not None and scanned.problem is None:
        report.checks.append(per_database(found.loaded, scanned.expected(),
                                          scanned.announced, scanned.keys))
    elif found.expected_keys is None:
        report.checks.append(Check("key_counts", SKIP, f"{total} keys loaded; "
                                   "redis-check-rdb reported no key count"))
    else:
        ok = total == found.expected_keys
        why = scanned.problem if scanned is not None else "not scanned"
        report.checks.append(Check(
            "key_counts", PASS if ok else FAIL,
            f"{total} keys loaded, {found.expected_keys} in the RDB (less expired)"
            + ("" if ok else ": they differ") + f"; per-database counts unavailable ({why})"))


def per_database(loaded: dict[int, int], expected: dict[int, int],
                 announced: dict[int, int], held: dict[int, int]) -> Check:
    """``key_counts`` per database: the keys loaded equal what the RDB's RESIZEDB
    announces less those already expired, and the RDB holds as many keys as it
    announces. Pure."""
    wrong = [f"db{db}: RESIZEDB announces {n}, the file holds {held.get(db, 0)}"
             for db, n in sorted(announced.items()) if held.get(db, 0) != n]
    for db in sorted(set(expected) | set(loaded)):
        want, got = expected.get(db, 0), loaded.get(db, 0)
        if want != got:
            wrong.append(f"db{db}: {want} in the RDB (less expired), {got} loaded")
    total = sum(loaded.values())
    shown = ", ".join(f"db{db}={n}" for db, n in sorted(loaded.items())) or "none"
    if wrong:
        return Check("key_counts", FAIL, "; ".join(wrong))
    return Check("key_counts", PASS, f"{total} keys loaded, {sum(expected.values())} in the "
                 f"RDB (RESIZEDB per database, less expired); per db: {shown}")
