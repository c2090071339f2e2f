"""One list per vocabulary: the config layer (below engines, codecs and storage) keeps its
own copies of their names and keys, and these tests hold the copies equal to what each
package declares, so adding an engine, a target or a codec cannot half-land."""

from __future__ import annotations

import importlib

from dbcrate import codecs, config, engines, storage
from dbcrate.config import keys

#: types the config already accepts while their storage modules are being built
PLANNED_TARGET_TYPES = {"sftp", "gcs", "azure"} - set(storage.REGISTRY)


def test_engine_names_match_the_registry() -> None:
    assert set(config.ENGINES) == set(engines.REGISTRY) == set(keys.ENGINE_OPTIONS)


def test_each_engine_package_declares_exactly_the_options_config_accepts_for_it() -> None:
    for name, package in engines.PACKAGES.items():
        declared = importlib.import_module(package).OPTION_KEYS
        assert keys.ENGINE_OPTIONS[name] == declared, name


def test_config_accepts_exactly_the_union_of_the_engines_options() -> None:
    union = frozenset().union(*(importlib.import_module(p).OPTION_KEYS
                                for p in engines.PACKAGES.values()))
    assert union == keys.ALL_ENGINE_OPTIONS
    from dbcrate.config.parse import ENGINE_OPTION_KEYS

    assert set(ENGINE_OPTION_KEYS) == union


def test_default_urls_are_the_engines_own() -> None:
    for name, package in engines.PACKAGES.items():
        assert keys.DEFAULT_URLS[name] == importlib.import_module(package).DEFAULT_URL, name


def test_target_types_match_the_storage_registry() -> None:
    assert set(config.TARGET_TYPES) == set(storage.REGISTRY) | PLANNED_TARGET_TYPES
    assert set(keys.TARGET_KEYS) == set(config.TARGET_TYPES)


def test_codec_names_match_the_codec_registry() -> None:
    assert set(config.COMPRESSIONS) == set(codecs.COMPRESSIONS)
    assert set(config.ENCRYPTIONS) == set(codecs.ENCRYPTIONS)
    for name in {*config.COMPRESSIONS, *config.ENCRYPTIONS} - {"age", "aes-256-gcm"}:
        assert codecs.make(name).name == name
