"""Database engines: one Protocol, one module per implementation, a registry.

An engine dumps and restores one database with its native tools, run as subprocesses.
Passwords reach the tools by environment or a private file, never by argv.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from dbcrate.model import EngineInfo


@dataclass(frozen=True)
class Connection:
    """How to reach one database: its URL (no password in it), the password, options."""

    url: str
    password: str | None = field(default=None, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)


class Engine(Protocol):
    """Dump and restore one database."""

    name: str
    #: file extension of the native dump, e.g. ``pgdump``
    ext: str

    def probe(self) -> EngineInfo:
        """Connect, learn the server version and pick the matching dump tool.
        Raises ``DatabaseUnreachable``, ``AuthenticationFailed`` or ``ToolNotFound``."""
        ...

    def dump(self) -> Iterator[bytes]:
        """Stream the native dump. After the tool's EOF, raises ``DumpFailed`` (with the
        tool's stderr tail) if it exited non-zero. Closing the iterator early kills the tool."""
        ...

    def check_restore_target(self, *, clean: bool) -> None:
        """Raise ``RestoreRefused`` if the restore target may not be written to (not empty
        and ``clean`` is false); ``DatabaseError`` if it cannot be reached. Changes nothing."""
        ...

    def restore(self, chunks: Iterable[bytes], *, clean: bool = False) -> None:
        """Restore the native dump ``chunks`` into the database, creating it if missing.

        Atomic where the engine allows (PostgreSQL: one transaction): if ``chunks`` raises
        or the tool fails, the target is left as it was (a database we created is dropped)
        and the error propagates (tool failure: ``RestoreFailed``)."""
        ...


EngineFactory = Callable[[Connection], Engine]


def _registry() -> dict[str, EngineFactory]:
    from dbcrate.engines.postgres import PostgresEngine

    return {"postgres": PostgresEngine}


def engine_names() -> list[str]:
    """The ``engine`` values this build supports."""
    return sorted(_registry())


def open_engine(engine: str, connection: Connection) -> Engine:
    """Build the engine registered as ``engine``. Raises ``KeyError`` for unknown names
    (config validation rejects them first)."""
    return _registry()[engine](connection)
