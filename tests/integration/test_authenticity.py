"""Issue 8.1/8.2 through the real CLI and a real PostgreSQL: a swapped (downgraded)
backup is refused before any byte is decoded, manifests are authenticated (SSHSIG
signatures checked by stock ssh-keygen, the aes-job HMAC), format-1 manifests still
restore with a warning, and prune never acts on an unauthenticated manifest."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from dbcrate import catalog, codecs, signing
from dbcrate.codecs.age import fingerprint
from dbcrate.sandbox import load_sample
from dbcrate.streams import apply
from tests.lib.e2e import DBCRATE, Setup, local_target, make_setup
from tests.servers.postgres import PgDatabase, new_db_name


def _setup(tmp: Path, db: PgDatabase, encryption: str = "age") -> Setup:
    return make_setup(tmp, url=db.url, password=db.password,
                      targets=[local_target(tmp / "backups")], encryption=encryption)


def _add_backup_keys(setup: Setup, **keys: Any) -> None:
    lines = "".join(f"{k} = {json.dumps(v)}\n" for k, v in keys.items())
    setup.config.write_text(setup.config.read_text().replace("[backup]\n", f"[backup]\n{lines}",
                                                             1))


def _signing_key(tmp: Path, name: str = "signing.key") -> tuple[Path, str]:
    path = tmp / name
    pem, public = signing.generate()
    signing.write_private(str(path), pem)
    return path, public.line()


def _only(setup: Setup) -> tuple[Path, Path, dict[str, Any]]:
    """The data object, manifest path and manifest doc of the job's only backup."""
    root = setup.dir / "backups"
    [mpath] = root.rglob("*.manifest.json")
    doc = json.loads(mpath.read_bytes())
    return root / doc["data_key"], mpath, doc


def _write(mpath: Path, doc: dict[str, Any]) -> None:
    mpath.write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")


def _digest(data: bytes) -> dict[str, Any]:
    return {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _other_dump(db: PgDatabase) -> tuple[bytes, str]:
    """A real pg_dump -Fc of another database (the attacker's data) and its name."""
    server = db.server
    name = new_db_name("attacker")
    server.create_database(name)
    load_sample(server.url(name), password=server.password, scale=3)
    server.psql("CREATE TABLE forged (x int)", db=name)
    proc = subprocess.run(
        [str(server.bin_dir / "pg_dump"), "-Fc", "-h", server.host, "-p", str(server.port),
         "-U", server.user, name],
        env={**os.environ, "PGPASSWORD": server.password}, capture_output=True, check=True)
    return proc.stdout, name


def _encode(data: bytes, *stages: codecs.Codec) -> bytes:
    return b"".join(apply([data], [c.encoder() for c in stages]))


def _restore(setup: Setup, db: PgDatabase, *extra: str) -> tuple[subprocess.CompletedProcess[str],
                                                                   str]:
    name = new_db_name("restored")
    proc = setup.run("restore", "orders", "--latest", "--to", db.server.url(name),
                     "--identity", str(setup.identity), *extra)
    return proc, name


# -- 8.1 no downgrade ----------------------------------------------------------------------


@pytest.mark.parametrize("encryption", ["age", "aes-256-gcm"])
def test_downgrade_swap_is_refused_before_any_byte_is_decoded(
    tmp_path: Path, pg_db: PgDatabase, encryption: str
) -> None:
    setup = _setup(tmp_path, pg_db, encryption)
    setup.run("backup", check=True)
    obj, mpath, doc = _only(setup)
    dump, other = _other_dump(pg_db)
    try:
        stored = _encode(dump, codecs.make("zstd", level=1))  # pg_dump | zstd
        obj.write_bytes(stored)
        doc.update(stages=["zstd"], encryption="none", recipients=[], key_id="",
                   plaintext=_digest(dump), stored=_digest(stored))
        variants = [("format 2", {**doc, "hmac": ""})]
        if encryption == "aes-256-gcm":  # the attacker cannot make an hmac: try format 1 too
            old = {k: v for k, v in doc.items() if k != "hmac"}
            variants = [("format 1", {**old, "format": 1}), ("stale hmac", doc)]
        for label, variant in variants:
            _write(mpath, variant)
            proc, name = _restore(setup, pg_db)
            assert proc.returncode == 5, (label, proc.stdout, proc.stderr)
            assert "Traceback" not in proc.stderr
            if label != "stale hmac":
                assert mpath.name in proc.stderr and "claims encryption 'none'" in proc.stderr
                assert f"requires {encryption}" in proc.stderr
            else:
                assert "fails its hmac" in proc.stderr
            assert not pg_db.server.database_exists(name), label  # not even created
            cat = subprocess.run(
                [DBCRATE, "--config", str(setup.config),
                 "cat", "orders", "--latest", "--identity", str(setup.identity)],
                capture_output=True, check=False)
            assert cat.returncode == 5 and cat.stdout == b"", label
    finally:
        pg_db.server.drop_database(other)


def test_allow_unencrypted_restores_an_old_plaintext_backup_on_purpose(
    tmp_path: Path, pg_db: PgDatabase
) -> None:
    setup = _setup(tmp_path, pg_db, "none")
    setup.run("backup", check=True)
    # later the job's config is switched to age: its old plaintext backup is refused ...
    text = setup.config.read_text().replace(
        "encrypt = false", f"recipients = [{json.dumps(setup.recipient)}]")
    setup.config.write_text(text)
    proc, name = _restore(setup, pg_db)
    assert proc.returncode == 5 and "requires age" in proc.stderr
    assert not pg_db.server.database_exists(name)
    # ... unless asked for, loudly
    proc, name = _restore(setup, pg_db, "--allow-unencrypted")
    try:
        assert proc.returncode == 0, proc.stderr
        assert "UNENCRYPTED" in proc.stderr
        assert PgDatabase(pg_db.server, name).checksums() == pg_db.checksums()
    finally:
        pg_db.server.drop_database(name)


def test_a_backup_encrypted_to_another_recipient_is_refused(
    tmp_path: Path, pg_db: PgDatabase
) -> None:
    setup = _setup(tmp_path, pg_db, "age")
    setup.run("backup", check=True)
    _, mpath, doc = _only(setup)
    doc["recipients"] = ["0123456789abcdef"]
    _write(mpath, doc)
    proc, name = _restore(setup, pg_db)
    assert proc.returncode == 5 and "requires age to " + fingerprint(setup.recipient) in proc.stderr
    assert not pg_db.server.database_exists(name)


# -- 8.2 signatures ------------------------------------------------------------------------


def _signed_setup(tmp: Path, db: PgDatabase) -> tuple[Setup, Path, str]:
    setup = _setup(tmp, db, "age")
    key, line = _signing_key(tmp)
    _add_backup_keys(setup, signing_key_file=str(key), trusted_signers=[line])
    return setup, key, line


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_signed_manifest_verifies_with_ssh_keygen_and_an_edit_is_refused(
    tmp_path: Path, pg_db: PgDatabase
) -> None:
    setup, _, line = _signed_setup(tmp_path, pg_db)
    setup.run("backup", check=True)
    [b] = setup.list_json("orders")
    assert b["authenticated"] == "signed by dbcrate-manifest" and b["format"] == catalog.FORMAT
    _, mpath, doc = _only(setup)
    sig = mpath.with_name(mpath.name + ".sig")
    assert sig.read_text().startswith("-----BEGIN SSH SIGNATURE-----\n")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"backup-host {line}\n")

    def ssh_verify() -> subprocess.CompletedProcess[bytes]:
        with mpath.open("rb") as stdin:
            return subprocess.run(
                ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "backup-host",
                 "-n", "dbcrate-manifest", "-s", str(sig)],
                stdin=stdin, capture_output=True, check=False)

    assert ssh_verify().returncode == 0, ssh_verify().stderr
    # the same trust from an OpenSSH allowed_signers file restores it
    text = setup.config.read_text().replace(f"trusted_signers = {json.dumps([line])}",
                                            f"allowed_signers_file = {json.dumps(str(allowed))}")
    setup.config.write_text(text)
    proc, name = _restore(setup, pg_db)
    try:
        assert proc.returncode == 0, proc.stderr
        assert "not authenticated" not in proc.stderr
        assert PgDatabase(pg_db.server, name).checksums() == pg_db.checksums()
    finally:
        pg_db.server.drop_database(name)

    # relabel the old backup as new: the signature no longer matches
    doc["started_at"] = "2099-01-01T00:00:00Z"
    _write(mpath, doc)
    assert ssh_verify().returncode != 0
    proc, name = _restore(setup, pg_db)
    assert proc.returncode == 5 and "does not verify" in proc.stderr, proc.stderr
    assert not pg_db.server.database_exists(name)
    listed = setup.run("list", "orders", "--json", check=True)
    assert json.loads(listed.stdout) == [] and mpath.name in listed.stderr


def test_forged_age_backup_to_the_real_recipient_is_refused_with_trusted_signers(
    tmp_path: Path, pg_db: PgDatabase
) -> None:
    setup, _, line = _signed_setup(tmp_path, pg_db)
    setup.run("backup", check=True)
    obj, mpath, doc = _only(setup)
    sig = mpath.with_name(mpath.name + ".sig")
    dump, other = _other_dump(pg_db)
    try:
        stored = _encode(dump, codecs.make("zstd", level=1),
                         codecs.make("age", recipients=(setup.recipient,)))
        obj.write_bytes(stored)
        doc.update(plaintext=_digest(dump), stored=_digest(stored))
        _write(mpath, doc)
        genuine_sig = sig.read_bytes()
        other_key, _ = _signing_key(tmp_path, "attacker.key")
        forged_sig = signing.sign(
            signing.load_signing_key(str(other_key), file="t", key="k"), mpath.read_bytes())
        cases = [("stale signature", genuine_sig, "does not verify"),
                 ("unsigned", None, "is not signed"),
                 ("another key", forged_sig, "not trusted")]
        for label, body, message in cases:
            if body is None:
                sig.unlink(missing_ok=True)
            else:
                sig.write_bytes(body)
            proc, name = _restore(setup, pg_db)
            assert proc.returncode == 5, (label, proc.stderr)
            assert message in proc.stderr and mpath.name in proc.stderr, (label, proc.stderr)
            assert not pg_db.server.database_exists(name), label
            listed = setup.run("list", "orders", "--json", check=True)
            assert json.loads(listed.stdout) == [] and mpath.name in listed.stderr

        # the attack is real: without trusted signers the forgery restores (with a warning)
        text = setup.config.read_text().replace(f"trusted_signers = {json.dumps([line])}\n", "")
        setup.config.write_text(text)
        proc, name = _restore(setup, pg_db)
        try:
            assert proc.returncode == 0, proc.stderr
            assert "not authenticated" in proc.stderr
            assert pg_db.server.psql("SELECT count(*) FROM forged", db=name) == [(0,)]
        finally:
            pg_db.server.drop_database(name)
    finally:
        pg_db.server.drop_database(other)


def test_prune_ignores_unsigned_manifests(tmp_path: Path, pg_db: PgDatabase) -> None:
    setup, _, _ = _signed_setup(tmp_path, pg_db)
    text = setup.config.read_text().replace("[[backup.jobs]]",
                                            "[[backup.jobs]]\nretention = { daily = 1 }")
    setup.config.write_text(text)
    for _ in range(3):
        setup.run("backup", check=True)
    oldest, middle, newest = setup.list_json("orders")
    root = tmp_path / "backups"
    msig = root / (middle["key"] + ".manifest.json.sig")
    msig.unlink()  # the middle one is now unauthenticated
    proc = setup.run("prune", "orders", "--json", check=True)
    [report] = json.loads(proc.stdout)
    assert [k["id"] for k in report["kept"]] == [newest["id"]]
    assert report["deleted"] == [oldest["id"]]
    assert [i["key"] for i in report["ignored"]] == [middle["key"] + ".manifest.json"]
    assert (root / middle["key"]).exists()
    assert (root / (middle["key"] + ".manifest.json")).exists()
    assert not (root / oldest["key"]).exists()
    assert not (root / (oldest["key"] + ".manifest.json.sig")).exists()  # sig removed too
    assert [b["id"] for b in setup.list_json("orders")] == [newest["id"]]


# -- 8.2 the aes-job hmac -------------------------------------------------------------------


def test_aes_manifest_hmac(tmp_path: Path, pg_db: PgDatabase) -> None:
    setup = _setup(tmp_path, pg_db, "aes-256-gcm")
    setup.run("backup", check=True)
    [b] = setup.list_json("orders")
    assert b["authenticated"] == "hmac"
    _, mpath, doc = _only(setup)
    genuine = mpath.read_bytes()
    assert doc["format"] == catalog.FORMAT and len(doc["hmac"]) == 64
    for label, edit in [("flipped field", {"tool_version": "17.0"}),
                        ("relabelled", {"started_at": "2099-01-01T00:00:00Z"}),
                        ("no hmac", {"hmac": ""})]:
        _write(mpath, {**doc, **edit})
        proc, name = _restore(setup, pg_db)
        assert proc.returncode == 5, (label, proc.stderr)
        assert "hmac" in proc.stderr and mpath.name in proc.stderr, (label, proc.stderr)
        assert not pg_db.server.database_exists(name)
        assert setup.list_json("orders") == [], label
    mpath.write_bytes(genuine)
    proc, name = _restore(setup, pg_db)
    try:
        assert proc.returncode == 0, proc.stderr
    finally:
        pg_db.server.drop_database(name)


# -- format 1 --------------------------------------------------------------------------------


@pytest.mark.parametrize("encryption", ["age", "aes-256-gcm"])
def test_format_1_manifest_restores_with_a_warning(
    tmp_path: Path, pg_db: PgDatabase, encryption: str
) -> None:
    setup = _setup(tmp_path, pg_db, encryption)
    _add_backup_keys(setup, plaintext_sha256=True)  # format 1 always records it
    setup.run("backup", check=True)
    _, mpath, _ = _only(setup)
    m = catalog.decode(mpath.read_bytes(), where="t")
    old = catalog.encode(replace(m, format=1, hmac=""))  # the way dbcrate 0.1 wrote it
    assert b'"format": 1' in old and b"hmac" not in old
    mpath.write_bytes(old)
    proc, name = _restore(setup, pg_db)
    try:
        assert proc.returncode == 0, proc.stderr
        assert "format 1" in proc.stderr
        assert PgDatabase(pg_db.server, name).checksums() == pg_db.checksums()
    finally:
        pg_db.server.drop_database(name)
    if encryption == "age":  # ... but not once trusted signers are set
        _, line = _signing_key(tmp_path)
        _add_backup_keys(setup, trusted_signers=[line])
        proc, name = _restore(setup, pg_db)
        assert proc.returncode == 5 and "format 1" in proc.stderr
        assert not pg_db.server.database_exists(name)


def test_a_bad_signing_key_file_fails_before_dumping(tmp_path: Path, pg_db: PgDatabase) -> None:
    setup = _setup(tmp_path, pg_db, "age")
    junk = tmp_path / "junk.key"
    junk.write_text("not a key\n")
    _add_backup_keys(setup, signing_key_file=str(junk))
    proc = setup.run("backup")
    assert proc.returncode == 2 and "signing_key_file" in proc.stderr, proc.stderr
    assert not list((tmp_path / "backups").rglob("*.pgdump*"))


def test_signed_backup_on_s3_and_local_lists_and_restores(
    tmp_path: Path, pg_db: PgDatabase, s3_target: Any
) -> None:
    import dataclasses

    s3 = dataclasses.replace(s3_target, name="s3")
    setup = make_setup(tmp_path, url=pg_db.url, password=pg_db.password,
                       targets=[local_target(tmp_path / "backups"), s3])
    key, line = _signing_key(tmp_path)
    _add_backup_keys(setup, signing_key_file=str(key), trusted_signers=[line])
    setup.run("backup", check=True)
    for target in ("local", "s3"):
        [b] = setup.list_json("orders", "--target", target)
        assert b["authenticated"].startswith("signed by"), target
        name = new_db_name("s3signed")
        try:
            proc = setup.run("restore", "orders", "--latest", "--target", target, "--to",
                             pg_db.server.url(name), "--identity", str(setup.identity))
            assert proc.returncode == 0, proc.stderr
            assert PgDatabase(pg_db.server, name).checksums() == pg_db.checksums()
        finally:
            pg_db.server.drop_database(name)
