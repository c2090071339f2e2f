"""One module per command, each with ``register(sub, common)`` adding its parser and
handler; ``MODULES`` is the registry ``cli.main`` builds the parser from (in help order)."""

from __future__ import annotations

from types import ModuleType

from dbcrate.cli.commands import (
    agent,
    audit,
    backup,
    cat,
    grants,
    keygen,
    listing,
    prune,
    restore,
    server,
    status,
    target,
    tools,
    verify,
    wal,
)

MODULES: tuple[ModuleType, ...] = (
    keygen, backup, listing, restore, cat, prune, target, tools, grants, agent, status, audit,
    verify, wal, server,
)

__all__ = ["MODULES"]
