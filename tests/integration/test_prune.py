"""prune through the real CLI: retention applied to backups in storage, for any engine."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.lib.e2e import Setup, local_target, make_setup
from tests.servers.postgres import PgDatabase, new_db_name
from tests.servers.redis import RedisServer, load_sample


def objects(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def three_backups(setup: Setup) -> list[dict[str, object]]:
    for _ in range(3):
        setup.run("backup", check=True)
    listed = setup.list_json("orders")
    assert len(listed) == 3
    return listed


@pytest.fixture(params=["postgres", "redis"])
def engine_setup(
    request: pytest.FixtureRequest, tmp_path: Path
) -> tuple[Setup, str, object]:
    if request.param == "postgres":
        db: PgDatabase = request.getfixturevalue("pg_db")
        setup = make_setup(tmp_path, url=db.url, password=db.password,
                           targets=[local_target(tmp_path / "backups")],
                           )
        return setup, "postgres", db
    server: RedisServer = request.getfixturevalue("redis_server")
    load_sample(server)
    setup = make_setup(tmp_path, url=server.url, password=server.password, engine="redis",
                       targets=[local_target(tmp_path / "backups")])
    return setup, "redis", server


def test_prune_keeps_what_the_policy_says(
    engine_setup: tuple[Setup, str, object], tmp_path: Path
) -> None:
    setup, engine, source = engine_setup
    # all three backups fall on the same UTC day: daily = 1 keeps only the newest
    text = setup.config.read_text().replace(
        "[[backup.jobs]]", "[[backup.jobs]]\nretention = { daily = 1 }")
    setup.config.write_text(text)
    listed = three_backups(setup)
    newest = listed[-1]["id"]
    before = objects(tmp_path / "backups")
    per = 3 if engine == "postgres" else 2  # data, manifest (+ the stats part, postgres)
    assert len(before) == 3 * per  # three backups

    dry = setup.run("prune", "orders", "--dry-run", "--json", check=True)
    [report] = json.loads(dry.stdout)
    assert [k["id"] for k in report["kept"]] == [newest]
    assert "newest" in report["kept"][0]["reasons"]
    assert sorted(report["deleted"]) == sorted(b["id"] for b in listed[:2])
    assert objects(tmp_path / "backups") == before  # dry run deleted nothing

    out = setup.run("prune", "orders", check=True).stdout
    assert f"keep    {newest}" in out and "daily" in out
    assert [b["id"] for b in setup.list_json("orders")] == [newest]
    assert len(objects(tmp_path / "backups")) == per

    if engine == "postgres":  # what is left still restores
        assert isinstance(source, PgDatabase)
        name = new_db_name("pruned")
        try:
            setup.run("restore", "orders", "--latest", "--to", source.server.url(name),
                      "--identity", str(setup.identity), check=True)
            assert PgDatabase(source.server, name).checksums() == source.checksums()
        finally:
            source.server.drop_database(name)


def test_retention_days_keeps_recent_backups(tmp_path: Path, pg_db: PgDatabase) -> None:
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups")])
    setup.config.write_text(setup.config.read_text().replace(
        "[[backup.jobs]]", "[[backup.jobs]]\nretention_days = 30"))
    listed = three_backups(setup)
    out = setup.run("prune", check=True).stdout
    assert out.count("within 30 days") == 3
    assert len(setup.list_json("orders")) == len(listed)
