"""Issue 8.4: malformed manifests are contained. A type-confusion fuzz of decoding (each
field replaced by a value of every JSON type) raises only ManifestError and never yields
a manifest with a wrongly typed field; through the real CLI, `list` still shows the good
backups beside a bad manifest, prune leaves the bad one's objects, and restore --id of
the bad one exits 5 cleanly."""

from __future__ import annotations

import copy
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dbcrate import catalog
from dbcrate.errors import ManifestError
from dbcrate.model import Digest, Manifest, PartRecord
from tests.lib.e2e import local_target, make_setup
from tests.servers.postgres import PgDatabase

T0 = datetime(2026, 11, 21, 3, 0, 0, tzinfo=UTC)
VALUES: list[Any] = [
    None, True, False, 0, 1, -1, 2**70, 1.5, -0.0, "", "x", "2026-11-21T03:00:00Z",
    "a" * 64, "zstd", [], [None], ["zstd"], [1], ["age", "zstd"], {}, {"a": "b"}, {"a": 1},
    {"size": 1, "sha256": "a" * 64},
]


def genuine() -> dict[str, Any]:
    bid = catalog.new_id(T0)
    key = catalog.data_key("orders", T0, bid, ("pgdump", "zst", "age"))
    part = catalog.data_key("orders", T0, bid, ("sql", "zst", "age"), part="globals")
    m = Manifest(
        format=catalog.FORMAT, id=bid, job="orders", engine="postgres",
        server_version="17.11", tool="pg_dump", tool_version="17.11", stages=("zstd", "age"),
        started_at=T0, finished_at=T0 + timedelta(minutes=1), plaintext=Digest(10, "a" * 64),
        stored=Digest(5, "b" * 64), encryption="age", recipients=("0123456789abcdef",),
        dbcrate_version="0.1.0", data_key=key, extra={"k": "v"},
        parts=(PartRecord("globals", part, Digest(3, "c" * 64), Digest(4, "d" * 64)),),
    )
    doc: dict[str, Any] = json.loads(catalog.encode(m))
    return doc


def paths(doc: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every field path in ``doc`` (dict keys and list indexes), containers included."""
    items = doc.items() if isinstance(doc, dict) else enumerate(doc)
    for k, v in items:
        yield (*prefix, k)
        if isinstance(v, dict | list):
            yield from paths(v, (*prefix, k))


def mutate(doc: dict[str, Any], path: tuple[Any, ...], value: Any, *, delete: bool) -> bytes:
    out = copy.deepcopy(doc)
    node: Any = out
    for k in path[:-1]:
        node = node[k]
    if delete:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return json.dumps(out).encode()


def well_typed(m: Manifest) -> None:
    """What an accepted manifest must look like, whatever the JSON held."""
    for d in (m.plaintext, m.stored, *(x for p in m.parts for x in (p.plaintext, p.stored))):
        assert type(d.size) is int and d.size >= 0
        if d is m.plaintext and d.sha256 is None:  # not recorded: format 3, zstd first only
            assert m.format >= 3 and m.stages[:1] == ("zstd",)
            continue
        assert isinstance(d.sha256, str) and len(d.sha256) == 64
    for s in (m.id, m.job, m.engine, m.encryption, m.data_key, m.key_id, m.hmac, m.status):
        assert isinstance(s, str)
    assert all(isinstance(s, str) for s in (*m.stages, *m.recipients))
    assert isinstance(m.started_at, datetime) and m.started_at.tzinfo is not None
    assert isinstance(m.extra, dict) and all(isinstance(v, str) for v in m.extra.values())
    assert all(isinstance(k, str) for k in m.extra)
    assert m.data_key.startswith(m.job + "/") and all(p.key.startswith(m.job + "/")
                                                     for p in m.parts)


def test_type_confusion_fuzz_raises_only_manifest_error() -> None:
    doc = genuine()
    well_typed(catalog.decode(json.dumps(doc).encode(), where="k"))
    accepted = rejected = 0
    for path in paths(doc):
        for value, delete in [*((v, False) for v in VALUES), (None, True)]:
            data = mutate(doc, path, value, delete=delete)
            try:
                m = catalog.decode(data, where="fuzz")
            except ManifestError as exc:
                assert "fuzz" in exc.message and exc.exit_code == 5
                rejected += 1
                continue
            well_typed(m)
            accepted += 1
    assert rejected > 10 * accepted  # almost every mutation is refused ...
    assert accepted > 0  # ... but an unused optional field may be dropped


@pytest.mark.parametrize(("field", "value"), [
    ("started_at", 5), ("extra", []), ("stored", {"size": "5", "sha256": "b" * 64}),
    ("stored", {"size": True, "sha256": "b" * 64}), ("stored", {"size": -1, "sha256": "b" * 64}),
    ("plaintext", {"size": 1, "sha256": "B" * 64}), ("stages", "zstd"), ("stages", ["lz4"]),
    ("stages", ["zstd"]), ("stages", ["age", "zstd"]), ("stages", ["zstd", "gzip", "age"]),
    ("encryption", "none"), ("recipients", "0123456789abcdef"), ("recipients", []),
    ("key_id", "0123456789abcdef"), ("parts", {}), ("parts", [{"name": "g"}]),
    ("data_key", "../etc/passwd"), ("data_key", "other/x"), ("id", "not-a-uuid"),
    ("format", True), ("format", 4), ("hmac", 5), ("hmac", "zz"), ("extra", {"a": 1}),
])
def test_named_bad_fields_are_refused(field: str, value: Any) -> None:
    doc = genuine()
    doc[field] = value
    with pytest.raises(ManifestError, match="manifest k"):
        catalog.decode(json.dumps(doc).encode(), where="k")


def test_random_byte_damage_raises_only_manifest_error() -> None:
    data = json.dumps(genuine()).encode()
    rng = random.Random(8)
    for _ in range(2000):
        b = bytearray(data)
        for _ in range(rng.randint(1, 4)):
            b[rng.randrange(len(b))] = rng.randrange(256)
        try:
            well_typed(catalog.decode(bytes(b), where="k"))
        except ManifestError:
            pass
    for bad in (b"", b"\xff", b"[" * 100000, b"1" * 5000, b'{"format": 2}', b"null"):
        with pytest.raises(ManifestError):
            catalog.decode(bad, where="k")


def test_list_prune_and_restore_survive_a_bad_manifest(tmp_path: Path, pg_db: PgDatabase) -> None:
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")],
                       )
    text = setup.config.read_text().replace("[[backup.jobs]]",
                                            "[[backup.jobs]]\nretention = { daily = 1 }")
    setup.config.write_text(text)
    setup.run("backup", check=True)
    setup.run("backup", check=True)
    older, newer = setup.list_json("orders")
    root = tmp_path / "backups"
    # a third "backup" whose manifest is damaged, beside a real data object
    bid = catalog.new_id(T0)
    key = catalog.data_key("orders", T0, bid, ("pgdump", "zst", "age"))
    (root / key).parent.mkdir(parents=True, exist_ok=True)
    (root / key).write_bytes((root / older["key"]).read_bytes())
    doc = json.loads((root / (older["key"] + ".manifest.json")).read_bytes())
    doc.update(id=bid, data_key=key, started_at=5)
    bad = root / (key + ".manifest.json")
    bad.write_text(json.dumps(doc))

    proc = setup.run("list", "orders", "--json", check=True)
    assert [b["id"] for b in json.loads(proc.stdout)] == [older["id"], newer["id"]]
    assert key + ".manifest.json" in proc.stderr and "started_at" in proc.stderr
    table = setup.run("list", check=True)
    assert older["id"] in table.stdout and newer["id"] in table.stdout

    restore = setup.run("restore", "orders", "--id", bid, "--identity", str(setup.identity),
                        "--to", pg_db.server.url("never_created_x"))
    assert restore.returncode == 5, restore.stderr
    assert "started_at" in restore.stderr and "Traceback" not in restore.stderr
    assert not pg_db.server.database_exists("never_created_x")

    proc = setup.run("prune", "orders", "--json", check=True)
    [report] = json.loads(proc.stdout)
    assert report["deleted"] == [older["id"]]
    assert [i["key"] for i in report["ignored"]] == [key + ".manifest.json"]
    assert bad.exists() and (root / key).exists()  # never deleted on an unreadable manifest
    assert not (root / older["key"]).exists()


def test_a_manifest_can_only_name_its_own_objects() -> None:
    doc = genuine()
    other = catalog.new_id(T0)
    for field, value in [
        ("data_key", doc["data_key"].replace(doc["id"], other)),
        ("parts", [{**doc["parts"][0], "key": doc["data_key"]}]),
        ("parts", [{**doc["parts"][0], "key": doc["parts"][0]["key"].replace(doc["id"], other)}]),
    ]:
        with pytest.raises(ManifestError, match="this backup"):
            catalog.decode(json.dumps({**doc, field: value}).encode(), where="k")
