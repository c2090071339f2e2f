"""Pure layers of verify: the verdict, user-check expectations, row drops, the record
chain and history (an in-memory storage fake: the layer under test is records, not
storage); and a MongoDB backup, which has no verifier, exits 10 through the real CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest

from dbcrate import catalog
from dbcrate.model import Digest, Manifest, ObjectInfo
from dbcrate.operations import records
from dbcrate.operations.pipeline import KeyMaterial
from dbcrate.operations.verdict import Check, decide, row_drops, user_check, worst
from tests.lib.e2e import DBCRATE


def test_verdict_fail_beats_alarm_beats_pass_and_names_the_stage() -> None:
    assert decide([Check("integrity", "pass"), Check("amcheck", "skip")]).result == "pass"
    v = decide([Check("rto", "alarm", "slow"), Check("pg_restore", "fail", "2 errors")])
    assert (v.result, v.failed_at, v.reason, v.exit_code) == (
        "fail", "restore", "pg_restore: 2 errors", 20)
    v = decide([Check("sql", "alarm", "expected 3, got 2", name="n")])
    assert (v.result, v.failed_at, v.reason, v.exit_code) == (
        "alarm", None, "n: expected 3, got 2", 21)
    assert decide([Check("integrity", "fail", "x")]).failed_at == "integrity"
    assert decide([Check("foreign_keys", "fail", "x")]).failed_at == "checks"


def test_user_check_expectations() -> None:
    assert user_check("min_rows", (2,), [(1,), (2,)]) is None
    assert "at least 3" in (user_check("min_rows", (3,), [(1,)]) or "")
    assert user_check("between", (1, 10), [(10,)]) is None
    assert "between" in (user_check("between", (1, 10), [(11,)]) or "")
    assert "one row of one value" in (user_check("between", (1, 10), [(1, 2)]) or "")
    assert "2 rows" in (user_check("equals", (1,), [(1,), (1,)]) or "")
    assert user_check("equals", ("ok",), [("ok",)]) is None
    assert "a number" in (user_check("between", (1, 2), [("x",)]) or "")


def test_row_drops_and_worst() -> None:
    assert row_drops({"a": 20, "b": 100}, {"a": 100, "b": 100}, 20) == ["a: 100 -> 20 (-80%)"]
    assert row_drops({"a": 81}, {"a": 100}, 20) == []
    assert row_drops({"a": 0}, {"a": 100}, 0) == []  # 0 = off
    assert worst(["pass", "alarm"]) == "alarm" and worst([]) == "none"
    assert worst(["alarm", "fail", "pass"]) == "fail"


class MemStorage:
    """An in-memory Storage stand-in for the records layer only."""

    name = "mem"

    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}

    def put(self, key: str, chunks: Iterable[bytes]) -> ObjectInfo:
        assert key not in self.objects or key.endswith(records.HEAD_NAME), \
            "records are never overwritten"
        self.objects[key] = b"".join(chunks)
        return ObjectInfo(key, len(self.objects[key]))

    def get(self, key: str, start: int | None = None, end: int | None = None,
            ) -> Iterator[bytes]:
        yield self.objects[key]

    def list(self, prefix: str = "") -> Iterator[ObjectInfo]:
        for k in sorted(self.objects):
            if k.startswith(prefix):
                yield ObjectInfo(k, len(self.objects[k]))


def test_records_chain_mac_and_history() -> None:
    store = MemStorage()
    keys = KeyMaterial(aes_key=b"k" * 32)
    other = KeyMaterial(aes_key=b"o" * 32)
    prev = None
    for i, result in enumerate(["pass", "fail", "alarm"]):
        prev = records.write_record(
            store, f"j/2026/12/0{i + 1}/x-{i}.pgdump", {"backup_id": str(i), "result": result},
            keys, prev, now=datetime(2026, 12, i + 1, 4, 30, tzinfo=UTC))  # type: ignore[arg-type]
    found = records.read_records(store, "j")  # type: ignore[arg-type]
    assert [r.result for r in found] == ["pass", "fail", "alarm"]
    assert records.check_chain(found, records.mac_key(keys)).ok
    assert not records.check_chain(found, records.mac_key(other)).ok  # a forged MAC key
    days = records.history(found, 4, today=date(2026, 12, 4))
    assert [d["result"] for d in days] == ["pass", "fail", "alarm", "none"]
    middle = found[1].key
    body = json.loads(store.objects[middle])
    body["result"] = "pass"
    store.objects[middle] = json.dumps(body).encode()
    broken = records.check_chain(records.read_records(store, "j"), None)  # type: ignore[arg-type]
    assert not broken.ok and broken.broken_at == middle
    del store.objects[middle]  # pruned with its backup: the rest still chains
    assert records.check_chain(records.read_records(store, "j"), None).ok  # type: ignore[arg-type]


def _chain(store: MemStorage, keys: KeyMaterial | None) -> records.ChainCheck:
    found = records.read_records(store, "j")  # type: ignore[arg-type]
    manifests = {k for k in store.objects if k.endswith(".manifest.json")}
    secret = records.mac_key(keys) if keys else None
    chain = records.check_chain(found, secret, manifests)
    if not chain.ok:
        return chain
    return records.check_head(records.read_head(store, "j"), found,  # type: ignore[arg-type]
                              secret, manifests)


def test_a_deleted_newest_record_or_head_is_detected_a_pruned_one_is_not() -> None:
    store, keys = MemStorage(), KeyMaterial(aes_key=b"k" * 32)
    prev = None
    for i in range(3):
        data = f"j/2026/12/0{i + 1}/x-{i}.pgdump"
        store.objects[data + ".manifest.json"] = b"{}"
        prev = records.write_record(store, data, {"job": "j", "result": "pass"},  # type: ignore[arg-type]
                                    keys, prev, now=datetime(2026, 12, i + 1, tzinfo=UTC))
    assert _chain(store, keys).ok
    saved = dict(store.objects)
    newest = prev.key if prev else ""
    del store.objects[newest]  # its backup is still there: deleted, not pruned
    broken = _chain(store, None)
    assert not broken.ok and broken.broken_at == newest, broken
    del store.objects["j/2026/12/03/x-2.pgdump.manifest.json"]  # pruned with its backup
    assert _chain(store, keys).ok
    store.objects = dict(saved)
    middle = next(k for k in store.objects if k.startswith("j/2026/12/02/") and
                  k.endswith(records.SUFFIX))
    del store.objects[middle]
    assert _chain(store, None).broken_at == middle
    store.objects = dict(saved)
    del store.objects["j/" + records.HEAD_NAME]
    assert "missing" in _chain(store, None).why
    store.objects = dict(saved)
    head = json.loads(store.objects["j/" + records.HEAD_NAME])
    head["record"] = middle  # pointed back at an older record, without the MAC key
    store.objects["j/" + records.HEAD_NAME] = json.dumps(head).encode()
    assert "MAC" in _chain(store, keys).why


def test_a_mongodb_backup_exits_10_and_records_nothing(tmp_path: Path) -> None:
    store = tmp_path / "backups"
    started = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    bid = catalog.new_id(started)
    key = catalog.data_key("app", started, bid, ("archive",))
    body = b"not really a mongodump archive"
    digest = Digest(len(body), hashlib.sha256(body).hexdigest())
    m = Manifest(format=catalog.FORMAT, id=bid, job="app", engine="mongodb",
                 server_version="7.0.1", tool="mongodump", tool_version="100.9",
                 stages=(), started_at=started, finished_at=started, plaintext=digest,
                 stored=digest, encryption="none", data_key=key)
    (store / key).parent.mkdir(parents=True)
    (store / key).write_bytes(body)
    (store / catalog.manifest_key(key)).write_bytes(catalog.encode(m))
    cfg = tmp_path / "dbcrate.toml"
    cfg.write_text(f'[backup]\nencrypt = false\n\n[backup.targets.local]\ntype = "local"\n'
                   f'path = "{store}"\n\n[[backup.jobs]]\nname = "app"\nengine = "mongodb"\n'
                   'url = "mongodb://127.0.0.1:1/app"\ntargets = ["local"]\n')
    proc = subprocess.run([DBCRATE, "--config", str(cfg), "verify", "app", "--latest",
                           "--json"], capture_output=True, text=True, check=False)
    assert proc.returncode == 10, proc.stderr
    assert "mongodb" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not list(store.rglob("*.verify.json"))


def test_the_mariadb_binary_is_of_the_backups_flavour_and_series_or_newer() -> None:
    from dbcrate.errors import ToolNotFound
    from dbcrate.sandbox.mariadb import ServerBinary, choose

    old = ServerBinary("/usr/sbin/mariadbd", "10.6.18-MariaDB", "mariadb")
    new = ServerBinary("/opt/mariadbd", "11.4.2-MariaDB", "mariadb")
    mysql = ServerBinary("/usr/sbin/mysqld", "8.4.0", "mysql")
    assert choose("10.11.19-MariaDB-0+deb12u1", [old, new, mysql]) == new
    assert choose("10.6.1-MariaDB", [old, new]) == old
    assert choose("8.0.36", [old, mysql]) == mysql
    with pytest.raises(ToolNotFound) as err:
        choose("11.8.1-MariaDB", [old, new])
    assert "10.6.18-MariaDB, 11.4.2-MariaDB" in err.value.message
    assert "11.8 or newer" in err.value.message
    with pytest.raises(ToolNotFound, match="no MySQL server binary"):
        choose("8.0.36", [old])


def test_redis_key_counts_per_database() -> None:
    from dbcrate.operations.verify_redis import per_database

    ok = per_database({0: 5, 3: 2}, {0: 5, 3: 2}, {0: 6, 3: 2}, {0: 6, 3: 2})
    assert ok.status == "pass" and "db0=5, db3=2" in ok.detail
    moved = per_database({0: 6, 3: 1}, {0: 5, 3: 2}, {0: 6, 3: 2}, {0: 6, 3: 2})
    assert moved.status == "fail" and "db0: 5 in the RDB (less expired), 6 loaded" in \
        moved.detail and "db3: 2" in moved.detail  # the same total, other databases
    lied = per_database({0: 4}, {0: 4}, {0: 9}, {0: 4})
    assert lied.status == "fail" and "RESIZEDB announces 9, the file holds 4" in lied.detail


def test_verify_id_of_a_damaged_manifest_exits_5_and_records_nothing(tmp_path: Path) -> None:
    store = tmp_path / "backups"
    started = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
    bid = catalog.new_id(started)
    key = catalog.data_key("app", started, bid, ("pgdump",))
    (store / key).parent.mkdir(parents=True)
    (store / key).write_bytes(b"PGDMP not really")
    (store / catalog.manifest_key(key)).write_bytes(b'{"format": 2, "id": "' + bid.encode())
    cfg = tmp_path / "dbcrate.toml"
    cfg.write_text(f'[backup]\nencrypt = false\n\n[backup.targets.local]\ntype = "local"\n'
                   f'path = "{store}"\n\n[[backup.jobs]]\nname = "app"\n'
                   'url = "postgresql://127.0.0.1:1/app"\ntargets = ["local"]\n')
    proc = subprocess.run([DBCRATE, "--config", str(cfg), "verify", "app", "--id", bid,
                           "--json"], capture_output=True, text=True, check=False)
    assert proc.returncode == 5, proc.stderr
    assert "manifest" in proc.stderr and "Traceback" not in proc.stderr
    assert proc.stdout == "" and not list(store.rglob("*.verify.json"))
