"""The link's tables in the agent's state DB (``state.sqlite3``): command ids already
received (so a command runs at most once, across restarts), the seq of the last audit
record the server accepted, and an outbox of index entries kept while the server is
down. Every method is one transaction."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dbcrate.agent.state import FILE_NAME

_SCHEMA = """
CREATE TABLE IF NOT EXISTS remote_commands (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, job TEXT, status TEXT NOT NULL,
    error TEXT, received_at REAL NOT NULL, first_seq INTEGER, last_seq INTEGER);
CREATE TABLE IF NOT EXISTS remote_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER);
CREATE TABLE IF NOT EXISTS remote_outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT);
"""


class Ledger:
    def __init__(self, state_dir: Path) -> None:
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.conn = sqlite3.connect(state_dir / FILE_NAME, timeout=30,
                                    check_same_thread=False, isolation_level=None)
        self.lock = threading.Lock()
        with self.lock:
            self.conn.executescript(_SCHEMA)

    def close(self) -> None:
        self.conn.close()

    def claim(self, command_id: str, kind: str, job: str | None, seq: int) -> bool:
        """Record ``command_id`` as received; False if it was already (do not run it)."""
        with self.lock:
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO remote_commands (id, kind, job, status, received_at, "
                "first_seq) VALUES (?, ?, ?, 'running', ?, ?)",
                (command_id, kind, job, datetime.now(UTC).timestamp(), seq))
            return cur.rowcount == 1

    def done(self, command_id: str, status: str, error: str | None, seq: int) -> None:
        with self.lock:
            self.conn.execute("UPDATE remote_commands SET status = ?, error = ?, last_seq = ? "
                              "WHERE id = ?", (status, error, seq, command_id))

    def interrupted(self, error: str) -> list[str]:
        """Mark the commands a stopped agent left running as failed; their ids."""
        with self.lock:
            rows = self.conn.execute("SELECT id FROM remote_commands WHERE status = 'running'"
                                     ).fetchall()
            self.conn.execute("UPDATE remote_commands SET status = 'failed', error = ? "
                              "WHERE status = 'running'", (error,))
        return [str(r[0]) for r in rows]

    def outcome(self, command_id: str) -> tuple[str, str | None]:
        with self.lock:
            row = self.conn.execute("SELECT status, error FROM remote_commands WHERE id = ?",
                                    (command_id,)).fetchone()
        return (str(row[0]), row[1]) if row else ("running", None)

    def command_of(self, seq: int, job: str | None) -> str | None:
        """The command whose run wrote audit record ``seq`` (of ``job``), if any."""
        with self.lock:
            row = self.conn.execute(
                "SELECT id FROM remote_commands WHERE first_seq < ? AND "
                "(last_seq IS NULL OR last_seq >= ?) AND (job IS ? OR job = ?) "
                "ORDER BY received_at DESC LIMIT 1", (seq, seq, job, job)).fetchone()
        return str(row[0]) if row else None

    def cursor(self) -> int:
        with self.lock:
            row = self.conn.execute("SELECT seq FROM remote_cursor WHERE id = 1").fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, seq: int) -> None:
        """Move the cursor to ``seq`` (never backwards: two threads may send)."""
        with self.lock:
            self.conn.execute("INSERT INTO remote_cursor (id, seq) VALUES (1, ?) ON CONFLICT"
                              "(id) DO UPDATE SET seq = MAX(seq, excluded.seq)", (seq,))

    def put(self, body: dict[str, Any]) -> None:
        with self.lock:
            self.conn.execute("INSERT INTO remote_outbox (body) VALUES (?)", (json.dumps(body),))

    def pending(self) -> list[tuple[int, dict[str, Any]]]:
        with self.lock:
            rows = self.conn.execute("SELECT id, body FROM remote_outbox ORDER BY id").fetchall()
        return [(int(r[0]), json.loads(r[1])) for r in rows]

    def sent(self, ids: list[int]) -> None:
        with self.lock:
            self.conn.executemany("DELETE FROM remote_outbox WHERE id = ?", [(i,) for i in ids])
