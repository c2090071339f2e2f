"""Azure target details against Azurite: missing container, refused key, SAS permissions,
nothing visible before the commit."""

from __future__ import annotations

import os
from collections.abc import Iterator
from datetime import timedelta

import pytest

from dbcrate.config import TargetConfig
from dbcrate.errors import ConfigError, StorageError
from dbcrate.storage import open_target
from tests.servers.azurite import KEY, AzuriteServer, sas

MiB = 1 << 20


def test_missing_container_is_named_never_created(azurite_server: AzuriteServer) -> None:
    storage = open_target(azurite_server.target("no-such-container"))
    with pytest.raises(StorageError) as caught:
        storage.probe()
    assert "'no-such-container' does not exist" in caught.value.message
    assert "never creates" in (caught.value.hint or "")
    names = [c.name for c in azurite_server.service().list_containers()]
    assert "no-such-container" not in names


def test_wrong_account_key_names_the_credential(azure_target: TargetConfig) -> None:
    bad = "A" * 86 + "=="
    storage = open_target(TargetConfig("azure", "azure", {**azure_target.options,
                                                          "account_key": bad}))
    with pytest.raises(StorageError) as caught:
        storage.probe()
    assert "account_key was refused" in caught.value.message
    assert bad not in caught.value.message + str(caught.value.hint) + repr(storage)
    assert KEY not in repr(storage) + storage.describe()


def test_sas_without_write_names_the_permission(azurite_server: AzuriteServer) -> None:
    container = azurite_server.make_container()
    opts = {"container": container, "endpoint": azurite_server.endpoint,
            "sas_token": sas(container, read=True, list=True)}
    storage = open_target(TargetConfig("azure", "azure", opts))
    assert list(storage.list()) == []  # list is allowed
    with pytest.raises(StorageError, match="failed at step 'write'") as caught:
        storage.probe()
    assert "permission 'w'" in (caught.value.hint or "")
    full = open_target(TargetConfig("azure", "azure", {
        **opts, "sas_token": sas(container, read=True, list=True, write=True, delete=True)}))
    full.probe()


def test_nothing_visible_before_commit(azure_target: TargetConfig,
                                       azurite_server: AzuriteServer) -> None:
    storage = open_target(azure_target)
    seen: list[list[str]] = []

    def source() -> Iterator[bytes]:
        for i in range(3):
            yield os.urandom(MiB)  # block_size is 1 MiB: blocks are staged meanwhile
            if i == 2:
                seen.append([o.key for o in storage.list()])

    storage.put("obj", source())
    assert seen == [[]]
    assert [o.key for o in storage.list()] == ["obj"]
    assert storage.leftovers("", timedelta(0)) == 0


def test_config_errors() -> None:
    with pytest.raises(ConfigError, match="tier"):
        open_target(TargetConfig("a", "azure", {"container": "c", "account_name": "x",
                                                "tier": "Lukewarm"}))
    with pytest.raises(ConfigError, match="container"):
        open_target(TargetConfig("a", "azure", {"account_name": "x"}))
