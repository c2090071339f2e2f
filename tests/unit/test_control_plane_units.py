"""Pure pieces of the control plane: the role table, the keys a server may not set,
sealing on receipt, the effective config merge, missed slots, record signatures."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dbcrate import wire
from dbcrate.agent.remote.merge import effective
from dbcrate.codecs.age import generate_identity
from dbcrate.errors import ConfigError
from dbcrate.operations.seal import seal, unseal
from dbcrate.server.definitions import DefinitionRefused, prepare
from dbcrate.server.missed import missed_slot
from dbcrate.server.policy import POLICY, ROLES, allowed


def test_policy_table() -> None:
    assert [a for a in POLICY if allowed("viewer", a)] == ["read"]
    assert {a for a in POLICY if allowed("operator", a)} == {"read", "backup", "restore"}
    assert all(allowed("admin", a) for a in POLICY)
    assert not allowed("admin", "no-such-action")
    assert not allowed("root", "read")
    assert ROLES == ("viewer", "operator", "admin")


@pytest.mark.parametrize("table,key", [
    ({"recipients": ["age1x"]}, "recipients"),
    ({"encrypt": False}, "encrypt"),
    ({"encryption": "none"}, "encryption"),
    ({"encryption_key_file": "/k"}, "encryption_key_file"),
    ({"options": {"stop_command": "x"}}, "options.stop_command"),
    ({"pg_bin_dir": "/x"}, "pg_bin_dir"),
    ({"redis_cli_path": "/x"}, "redis_cli_path"),
    ({"dump_tool": "/x"}, "dump_tool"),
])
def test_forbidden_keys(table: dict[str, object], key: str) -> None:
    assert wire.forbidden_key(table) == key
    with pytest.raises(DefinitionRefused, match=key.split(".")[-1]):
        prepare({"engine": "postgres", **table}, "job", "j", "age1unused")


def test_allowed_keys_and_sealing() -> None:
    identity, recipient = generate_identity()
    body = {"engine": "postgres", "url": "postgresql://u@h/db", "password": "s3cret!",
            "password_file": "/run/secrets/pg", "schedule": "0 3 * * *", "targets": ["x"]}
    assert wire.forbidden_key(body) is None
    out = prepare(body, "job", "orders", recipient)
    assert "password" not in out and out["name"] == "orders"
    assert unseal(out["password_sealed"], (identity,)) == "s3cret!"
    presealed = seal("k3y", recipient)
    kept = prepare({"type": "s3", "secret_key_sealed": presealed}, "target", "s3", recipient)
    assert kept["secret_key_sealed"] == presealed
    with pytest.raises(DefinitionRefused, match="armor"):
        prepare({"type": "s3", "secret_key_sealed": "plain"}, "target", "s3", recipient)
    with pytest.raises(DefinitionRefused, match="age identity"):
        prepare({"type": "s3", "secret_key": identity}, "target", "s3", recipient)


def test_effective_config(tmp_path: Path) -> None:
    identity, recipient = generate_identity()
    local = tmp_path / "agent.toml"
    local.write_text('[backup]\nencrypt = false\n[backup.targets.local]\ntype = "local"\n'
                     f'path = "{tmp_path}"\n[[backup.jobs]]\nname = "mine"\nengine = "redis"\n'
                     'targets = ["local"]\n')
    remote = {"version": 3, "targets": {"local": {"type": "local", "path": "/elsewhere"}},
              "jobs": {"orders": {"engine": "postgres", "url": "postgresql://u@h/orders",
                                  "password_sealed": seal("pw1", recipient),
                                  "targets": ["local"]},
                       "mine": {"engine": "postgres", "targets": ["local"]}}}
    cfg = effective(local, remote, (identity,))
    assert cfg.jobs["orders"].password == "pw1"
    assert cfg.jobs["mine"].engine == "redis"  # a local name wins
    assert cfg.targets["local"].options["path"] == str(tmp_path)
    assert cfg.jobs["orders"].encryption == "none"  # local [backup] defaults apply
    bad = json.loads(json.dumps(remote))
    bad["jobs"]["orders"]["start_command"] = "sh"
    with pytest.raises(ConfigError, match="start_command"):
        effective(local, bad, (identity,))


def test_missed_slot() -> None:
    now = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
    job = {"schedule": "0 3 * * *", "timezone": "UTC"}
    since = now - timedelta(days=3)
    grace = timedelta(minutes=5)
    slot = datetime(2026, 5, 1, 3, 0, tzinfo=UTC)
    assert missed_slot(job, None, since, now, grace) == slot
    assert missed_slot(job, {"finished_at": "2026-05-01T03:04:00+00:00"}, since, now,
                       grace) is None
    assert missed_slot(job, {"finished_at": "2026-04-30T03:04:00Z"}, since, now, grace) == slot
    assert missed_slot(job, None, now - timedelta(hours=1), now, grace) is None  # new agent
    assert missed_slot({"schedule": None}, None, since, now, grace) is None


def test_record_signature() -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.public_key().public_bytes(serialization.Encoding.PEM,
                                        serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    rec = {"seq": 4, "event": "backup.ok", "job": "orders", "trigger": "schedule"}
    rec["signature"] = wire.sign(key, rec)
    assert wire.signature_ok(pem, rec)
    assert not wire.signature_ok(pem, {**rec, "job": "other"})
    other = ec.generate_private_key(ec.SECP256R1())
    assert not wire.signature_ok(pem, {**rec, "signature": wire.sign(other, rec)})


def test_ledger_claims_a_command_once(tmp_path: Path) -> None:
    from dbcrate.agent.remote.ledger import Ledger

    ledger = Ledger(tmp_path)
    assert ledger.claim("c1", "backup", "orders", 3)
    ledger.done("c1", "ok", None, 7)
    ledger.close()
    again = Ledger(tmp_path)  # a restarted agent remembers
    assert not again.claim("c1", "backup", "orders", 9)
    assert again.outcome("c1") == ("ok", None)
    assert again.command_of(5, "orders") == "c1"
    assert again.command_of(8, "orders") is None
    again.close()


def test_presealed_with_the_age_cli_opens(tmp_path: Path) -> None:
    import shutil
    import subprocess

    if shutil.which("age") is None:
        pytest.skip("Debian's age is not installed (scripts/install-system-deps.sh)")
    identity, recipient = generate_identity()
    armored = subprocess.run(["age", "-a", "-r", recipient], input=b"from-age-cli",
                             capture_output=True, check=True).stdout.decode()
    out = prepare({"type": "s3", "secret_key_sealed": armored}, "target", "s3", recipient)
    assert unseal(out["secret_key_sealed"], (identity,)) == "from-age-cli"
    key = tmp_path / "id.txt"
    key.write_text(identity + "\n")
    ours = seal("from-dbcrate", recipient)
    plain = subprocess.run(["age", "-d", "-i", str(key)], input=ours.encode(),
                           capture_output=True, check=True).stdout
    assert plain == b"from-dbcrate"


def test_unacknowledged_command_shows_lost() -> None:
    from dbcrate.server.api import LOST_AFTER, command_view
    from dbcrate.server.models import Command

    now = datetime.now(UTC)
    c = Command(id="c", kind="backup", args={}, actor="op@x", status="queued",
                created_at=now, delivered_at=None)
    assert command_view(c)["status"] == "queued"  # never delivered: still queued
    c.delivered_at = now - LOST_AFTER / 2
    assert command_view(c)["status"] == "queued"
    c.delivered_at = now - LOST_AFTER * 2
    assert command_view(c)["status"] == "lost"
    c.status = "ok"
    assert command_view(c)["status"] == "ok"


def test_ledger_marks_commands_of_a_stopped_agent_failed(tmp_path: Path) -> None:
    from dbcrate.agent.remote.ledger import Ledger

    ledger = Ledger(tmp_path)
    ledger.claim("c1", "backup", "orders", 1)
    ledger.claim("c2", "reindex", None, 1)
    ledger.done("c2", "ok", None, 2)
    assert ledger.interrupted("stopped") == ["c1"]
    assert ledger.outcome("c1") == ("failed", "stopped")
    assert ledger.outcome("c2") == ("ok", None)
    assert ledger.interrupted("stopped") == []
    ledger.set_cursor(5)
    ledger.set_cursor(3)  # never backwards
    assert ledger.cursor() == 5
    ledger.close()
