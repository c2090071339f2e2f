"""A restore reads only the manifests its choice can fall on (``listing.candidates``),
newest key first, and picks exactly the backup a look at every manifest picks: for
``--latest``, ``--at`` and ``--id``, with several backups in one second, incomplete and
damaged manifests, other jobs' and oddly named objects. Manifests are written to a real
local target; only ``get`` is counted."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dbcrate import catalog
from dbcrate.errors import BackupNotFound, UsageError
from dbcrate.model import Manifest
from dbcrate.operations.listing import candidates, manifests
from dbcrate.storage.local import LocalStorage
from tests.lib.manifests import manifest_at

T0 = datetime(2026, 1, 1, tzinfo=UTC)


class CountingStorage(LocalStorage):
    gets = 0

    def get(self, key: str, start: int | None = None, end: int | None = None) -> Iterator[bytes]:
        self.gets += 1
        return super().get(key, start, end)


def _store(storage: LocalStorage, m: Manifest) -> None:
    storage.put(catalog.manifest_key(m.data_key), [catalog.encode(m)])


def _pick(ms: list[Manifest], **selector: object) -> str:
    try:
        return catalog.select(ms, "orders", **selector).id  # type: ignore[arg-type]
    except (BackupNotFound, UsageError) as exc:
        return type(exc).__name__


def test_latest_reads_one_manifest_of_a_long_catalog(tmp_path: Path) -> None:
    storage = CountingStorage(tmp_path)
    made = [manifest_at(T0 + timedelta(days=i)) for i in range(40)]
    for m in made:
        _store(storage, m)
    storage.gets = 0
    found = candidates(storage, "orders")
    assert storage.gets == 1 and [m.id for m in found] == [made[-1].id]
    storage.gets = 0
    found = candidates(storage, "orders", at=T0 + timedelta(days=10, hours=1))
    assert storage.gets == 1 and _pick(found, at=T0 + timedelta(days=10, hours=1)) == made[10].id
    storage.gets = 0
    assert _pick(candidates(storage, "orders", backup_id=made[3].id[:12]),
                 backup_id=made[3].id[:12]) == made[3].id
    assert storage.gets == 1


@pytest.mark.parametrize("seed", range(12))
def test_the_choice_is_the_one_a_full_read_makes(tmp_path: Path, seed: int) -> None:
    rnd = random.Random(seed)
    storage = LocalStorage(tmp_path)
    base = T0 + timedelta(hours=rnd.randrange(100))
    made: list[Manifest] = []
    for _ in range(rnd.randrange(1, 25)):
        # several in one second, some incomplete, some of another job
        started = base + timedelta(seconds=rnd.randrange(6), microseconds=rnd.randrange(10**6))
        m = manifest_at(started, job=rnd.choice(["orders"] * 4 + ["other"]),
                      status=rnd.choice(["complete"] * 3 + ["running"]))
        made.append(m)
        _store(storage, m)
    if rnd.random() < 0.5:  # a damaged manifest and an object of another name
        storage.put(f"orders/{base:%Y/%m/%d}/{catalog.stamp(base)}-junk.manifest.json", [b"{"])
        storage.put("orders/9/odd.manifest.json", [catalog.encode(replace(made[0], job="x"))])
    full = list(manifests(storage, "orders"))
    times = [base + timedelta(seconds=s, microseconds=u) for s in range(-1, 7)
             for u in (0, 500_000, 999_999)]
    for at in times:
        assert _pick(candidates(storage, "orders", at=at), at=at) == _pick(full, at=at)
    assert _pick(candidates(storage, "orders"), latest=True) == _pick(full, latest=True)
    for m in made:
        for prefix in (m.id, m.id[:8], m.id[:13]):
            assert _pick(candidates(storage, "orders", backup_id=prefix), backup_id=prefix) \
                == _pick(full, backup_id=prefix)
