"""Counting rows as a mysqldump/mariadb-dump SQL dump streams past (docs/verify.md): each
``INSERT INTO `t` VALUES (...),(...);`` statement (on one line, or one row per line as
newer mariadb-dump writes it) adds its tuples to table ``t``. String literals are removed
first (they may hold parentheses; the dump escapes their newlines); the dump's other
literals (numbers, hex, NULL) hold no parentheses. A pass-through stage with ``stats()`` like the
PostgreSQL counter."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Iterator

_INSERT = re.compile(rb"^INSERT INTO `((?:[^`]|``)+)` (?:\([^)]*\) )?VALUES ?")
_STRING = re.compile(rb"'(?:[^'\\]|\\.|'')*'", re.S)


class InsertCounter:
    """Rows per table of an SQL dump, from its INSERT statements."""

    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.problem: str | None = None
        self._pending = b""
        self._table: str | None = None  # inside this table's INSERT statement

    def __call__(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._feed(chunk)
            yield chunk
        if self._pending:
            self._line(self._pending)
            self._pending = b""

    def _feed(self, chunk: bytes) -> None:
        data = self._pending + chunk
        lines = data.split(b"\n")
        self._pending = lines.pop()
        for line in lines:
            self._line(line)

    def _line(self, line: bytes) -> None:
        if self._table is None:
            m = _INSERT.match(line)
            if m is None:
                return
            self._table = m.group(1).replace(b"``", b"`").decode("utf-8", "replace")
            line = line[m.end():]
        # one "(" per row: the literals left once strings are gone hold none
        values = _STRING.sub(b"''", line)
        self.rows[self._table] = self.rows.get(self._table, 0) + values.count(b"(")
        if values.rstrip().endswith(b";"):
            self._table = None

    def stats(self) -> bytes | None:
        """The ``stats`` part (JSON): rows per table (schema ``""``: the dumped database)."""
        tables = [{"schema": "", "table": t, "rows": n} for t, n in sorted(self.rows.items())]
        return json.dumps({"format": 1, "method": "insert-stream", "tables": tables,
                           "large_objects": None}, sort_keys=True).encode()
