"""The engine Protocol and the value types every engine shares.

An engine dumps and restores one database with its native tools, run as subprocesses.
Passwords reach the tools by environment or a private file, never by argv.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from dbcrate.model import EngineInfo
from dbcrate.redact import redact_url, shown_repr


@dataclass(frozen=True)
class Connection:
    """How to reach one database: its URL (no password in it), the password, options."""

    url: str
    password: str | None = field(default=None, repr=False)
    options: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        """Like the dataclass repr, with the url's password and secret options masked."""
        return shown_repr(self, url=redact_url(self.url))


@dataclass(frozen=True)
class RestoreOptions:
    """How to restore. Engines ignore what does not apply to them."""

    #: allow restoring over a non-empty target (PostgreSQL: into a sibling database that
    #: is swapped in; MySQL: into a sibling schema whose tables are swapped in)
    clean: bool = False
    #: terminate other sessions on the target for the swap instead of refusing
    terminate_sessions: bool = False
    #: keep the replaced database (``{db}_dbcrate_old_{id}``) instead of dropping it
    keep_old: bool = False
    #: parallel restore workers (PostgreSQL: ``pg_restore -j``; needs a private temp file)
    jobs: int = 1
    no_owner: bool = False
    no_privileges: bool = False
    #: also restore the backup's cluster-wide part (PostgreSQL roles/tablespaces), first
    with_globals: bool = False
    #: override safety checks that can be overridden (e.g. restoring into an older major)
    force: bool = False
    #: engine-specific restore mode (Redis: ``copy``, ``datadir``, ``inplace``)
    mode: str | None = None
    #: engine-specific path (Redis ``datadir`` mode: the directory to put dump.rdb in)
    path: str | None = None


@dataclass(frozen=True)
class Part:
    """An extra object of a backup besides the main dump (e.g. PostgreSQL globals)."""

    name: str
    ext: str


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

    def check_restore_target(self, backup: EngineInfo, options: RestoreOptions) -> None:
        """Raise ``RestoreRefused`` if the target may not be written to (not empty without
        ``options.clean``; a server older than ``backup.server_version`` where the engine
        cannot restore downwards, unless ``options.force``); ``DatabaseError`` if it cannot
        be reached. Changes nothing."""
        ...

    def restore(self, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        """Restore the native dump ``chunks`` into the database, creating it if missing.

        Atomic where the engine allows (PostgreSQL: one transaction): if ``chunks`` raises
        or the tool fails, the target is left as it was (a database we created is dropped)
        and the error propagates (tool failure: ``RestoreFailed``)."""
        ...

    def extra_parts(self) -> Sequence[Part]:
        """Objects this backup has besides the main dump, dumped before it (usually none)."""
        ...

    def dump_part(self, name: str) -> Iterator[bytes]:
        """Stream the extra part ``name``; errors as for ``dump``."""
        ...

    def restore_part(self, name: str, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        """Apply the extra part ``name`` (before the main restore). Raises ``RestoreFailed``."""
        ...


class SinglePart:
    """Mixin for engines whose backups are one object."""

    def extra_parts(self) -> Sequence[Part]:
        return ()

    def dump_part(self, name: str) -> Iterator[bytes]:
        raise KeyError(name)

    def restore_part(self, name: str, chunks: Iterable[bytes], options: RestoreOptions) -> None:
        raise KeyError(name)


EngineFactory = Callable[[Connection], Engine]


class StatsCounter(Protocol):
    """A pass-through stage over a dump that counts what it carries (rows per table), for
    verified restores: ``stats()`` is the JSON to store as the backup's ``stats`` part
    (None when the dump held nothing countable)."""

    def __call__(self, chunks: Iterable[bytes]) -> Iterator[bytes]: ...

    def stats(self) -> bytes | None: ...
