"""``count_rows = "snapshot"`` (docs/verify.md): backup-time row counts by ``count(*)`` per
table in the dump's own snapshot, instead of counting COPY rows as the archive streams.

Before pg_dump starts, a REPEATABLE READ transaction on the job's database exports its
snapshot and pg_dump runs with ``--snapshot``, so both see exactly the same rows. After the
dump ended, each table the archive's table of contents lists as ``TABLE DATA`` is counted
in that transaction. This **reads every dumped table a second time** on the server (it
doubles the server's reads on large tables); the streaming counter (the default) does not.
The ``stats`` part it produces has the same shape (``method: "snapshot-count"``).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any

from psycopg import sql

from dbcrate.engines.postgres.archive import ArchiveFormatError, Header, _NeedMore, read_header
from dbcrate.engines.postgres.engine import PostgresEngine

#: bytes of the archive's start held at most while looking for the end of its TOC
_MAX_HEAD = 256 << 20


class SnapshotCounter:
    """A pass-through stage over ``engine.dump()`` (not yet started: it sets the
    engine's ``snapshot`` before the first chunk is pulled). ``stats()`` is valid after
    the stream ended; None if the counting failed (the backup goes on without counts)."""

    def __init__(self, engine: PostgresEngine) -> None:
        self.engine = engine
        self.header: Header | None = None
        self.problem: str | None = None
        self._counts: dict[tuple[str, str], int] = {}
        self._large_objects: int | None = None

    def __call__(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        """Export a snapshot, pass ``chunks`` through (parsing the TOC from their start),
        then count in the snapshot. Raises the engine's connection errors before the
        dump starts; a failed count afterwards only sets ``problem``."""
        conn = self.engine.session()
        try:
            conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            row = conn.execute("SELECT pg_export_snapshot()").fetchone()
            assert row is not None
            self.engine.snapshot = str(row[0])
            head = bytearray()
            for chunk in chunks:
                if self.header is None and self.problem is None:
                    head += chunk
                    self._parse(head)
                yield chunk
            self._count(conn)
        finally:
            self.engine.snapshot = None
            conn.close()

    def _parse(self, head: bytearray) -> None:
        try:
            self.header, _ = read_header(head)
            head.clear()
        except _NeedMore:
            if len(head) > _MAX_HEAD:
                self.problem = "the archive's table of contents is too large to hold"
        except ArchiveFormatError as e:
            self.problem = str(e)

    def _count(self, conn: Any) -> None:
        if self.header is None:
            self.problem = self.problem or "the archive ended before its table of contents"
            return
        try:
            for schema, table in sorted(set(self.header.tables.values())):
                query = sql.SQL("SELECT count(*) FROM ONLY {}.{}").format(
                    sql.Identifier(schema), sql.Identifier(table))
                self._counts[(schema, table)] = int(conn.execute(query).fetchone()[0])
            if self.engine.dumps_large_objects:
                row = conn.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
                self._large_objects = int(row[0])
        except Exception as e:  # psycopg.Error: counting is best effort, the dump is done
            self.problem = str(e).strip().splitlines()[0] if str(e).strip() else repr(e)

    def stats(self) -> bytes | None:
        """The ``stats`` part (JSON), or None if counting failed."""
        if self.problem is not None or self.header is None:
            return None
        tables = [{"schema": s, "table": t, "rows": n}
                  for (s, t), n in sorted(self._counts.items())]
        body = {"format": 1, "method": "snapshot-count", "tables": tables,
                "large_objects": self._large_objects}
        return json.dumps(body, sort_keys=True).encode()
