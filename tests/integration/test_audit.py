"""The hash-chained audit log: tampering caught at the right seq, concurrent appenders
from two processes leave one valid chain (through the real ``dbcrate audit`` CLI)."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from dbcrate.audit import GENESIS, AuditLog, record_hash, verify
from tests.lib.e2e import DBCRATE


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([DBCRATE, *args], capture_output=True, text=True, timeout=120,
                          check=False)


def make_log(state: Path, n: int = 6) -> list[str]:
    log = AuditLog(state)
    for i in range(n):
        log.append("backup.ok", job="orders", trigger="schedule", backup_id=f"id{i}",
                   target="local", size=100 + i)
    return (state / "audit.jsonl").read_text().splitlines(keepends=True)


def test_records_are_chained_as_documented(tmp_path: Path) -> None:
    lines = make_log(tmp_path, 3)
    recs = [json.loads(line) for line in lines]
    assert [r["seq"] for r in recs] == [1, 2, 3]
    assert recs[0]["prev"] == GENESIS
    for a, b in itertools.pairwise(recs):
        assert b["prev"] == a["hash"]
    for r in recs:
        assert r["hash"] == record_hash(r)
        assert set(r) == {"seq", "ts", "event", "prev", "hash", "job", "trigger", "backup_id",
                          "target", "size"}
    ok = cli("audit", "verify", "--state-dir", str(tmp_path))
    assert ok.returncode == 0, ok.stderr
    assert "3 records" in ok.stdout


def _edit(lines: list[str]) -> list[str]:
    rec = json.loads(lines[3])
    rec["size"] = 999999
    return [*lines[:3], json.dumps(rec) + "\n", *lines[4:]]


def _delete(lines: list[str]) -> list[str]:
    return [*lines[:3], *lines[4:]]


def _reorder(lines: list[str]) -> list[str]:
    return [*lines[:3], lines[4], lines[3], *lines[5:]]


def _cut(lines: list[str]) -> list[str]:
    return lines[:4]


@pytest.mark.parametrize(("tamper", "needle"), [
    (_edit, "line 4 (seq 4): record was edited"),
    (_delete, "line 4 (seq 5): expected seq 4: a record was deleted"),
    (_reorder, "line 4 (seq 5): expected seq 4"),
    (_cut, "the chain ends at seq 4 but the state DB head is seq 6: the tail was cut"),
])
def test_tampering_is_caught_at_the_right_seq(
    tmp_path: Path, tamper: Callable[[list[str]], list[str]], needle: str
) -> None:
    lines = make_log(tmp_path)
    (tmp_path / "audit.jsonl").write_text("".join(tamper(lines)))
    proc = cli("audit", "verify", "--state-dir", str(tmp_path))
    assert proc.returncode == 5, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_rehashed_edit_is_still_caught(tmp_path: Path) -> None:
    """Recomputing the edited record's own hash breaks the next record's prev."""
    lines = make_log(tmp_path)
    rec = json.loads(lines[2])
    rec["backup_id"] = "forged"
    rec["hash"] = record_hash(rec)
    (tmp_path / "audit.jsonl").write_text("".join([*lines[:2], json.dumps(rec) + "\n",
                                                   *lines[3:]]))
    proc = cli("audit", "verify", "--state-dir", str(tmp_path))
    assert proc.returncode == 5
    assert "line 4 (seq 4): prev does not match" in proc.stderr


_APPENDER = """
import sys
from pathlib import Path
from dbcrate.audit import AuditLog
log = AuditLog(Path(sys.argv[1]))
for i in range(200):
    log.append("backup.start", job=sys.argv[2], trigger="manual")
"""


def test_two_processes_appending_leave_one_chain(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    procs = [subprocess.Popen([sys.executable, "-c", _APPENDER, str(tmp_path), name], env=env)
             for name in ("a", "b")]
    assert [p.wait(timeout=300) for p in procs] == [0, 0]
    assert verify(tmp_path) == 400
    recs = [json.loads(line) for line in (tmp_path / "audit.jsonl").read_text().splitlines()]
    assert sorted(r["job"] for r in recs).count("a") == 200
    listed = cli("audit", "list", "--state-dir", str(tmp_path), "--job", "b", "--json")
    assert listed.returncode == 0
    stored = (tmp_path / "audit.jsonl").read_text().splitlines()
    assert listed.stdout.splitlines() == [line for line in stored if '"job":"b"' in line]


def test_list_filters_by_job_and_event(tmp_path: Path) -> None:
    log = AuditLog(tmp_path)
    log.append("backup.start", job="orders", trigger="manual")
    log.append("backup.ok", job="orders", trigger="manual", backup_id="B1", target="local",
               size=5)
    log.append("backup.ok", job="users", trigger="schedule", backup_id="B2", target="s3",
               size=7)
    proc = cli("audit", "list", "--state-dir", str(tmp_path), "--event", "backup.ok",
               "--job", "orders")
    assert proc.returncode == 0
    [line] = proc.stdout.splitlines()
    assert line.startswith("2 ") and "backup.ok job=orders" in line and "backup_id=B1" in line
    as_json = cli("audit", "list", "--state-dir", str(tmp_path), "--event", "backup.ok",
                  "--json")
    assert [json.loads(x)["backup_id"] for x in as_json.stdout.splitlines()] == ["B1", "B2"]
