"""`dbcrate target check NAME --json` against real servers: steps, versioning, object lock
(moto buckets with Object Lock, which need Content-MD5), failing probes; S3 max_parts."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import Any

import pytest

from dbcrate.config import TargetConfig
from dbcrate.errors import StorageError
from dbcrate.storage import open_target
from tests.lib.e2e import Setup, local_target, make_setup
from tests.servers.azurite import AzuriteServer, sas
from tests.servers.gcs import GcsServer
from tests.servers.s3 import S3Server
from tests.servers.sshd import SshServer

MiB = 1 << 20


def _setup(tmp_path: Path, target: TargetConfig) -> Setup:
    return make_setup(tmp_path, url="postgresql://x@127.0.0.1:9/x", password="p",
                      targets=[target])


def _check(setup: Setup, name: str) -> tuple[int, dict[str, Any], str]:
    proc = setup.run("target", "check", name, "--json")
    assert "Traceback" not in proc.stderr
    return proc.returncode, json.loads(proc.stdout), proc.stderr


def test_s3_plain_versioned_and_locked(tmp_path: Path, s3_server: S3Server) -> None:
    client = s3_server.client()
    plain = s3_server.make_bucket()
    versioned = s3_server.make_bucket()
    client.put_bucket_versioning(Bucket=versioned,
                                 VersioningConfiguration={"Status": "Enabled"})
    locked = f"{s3_server.make_bucket()}-lock"
    client.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    client.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    expect = {plain: ("disabled", False), versioned: ("enabled", False),
              locked: ("enabled", True)}
    for i, (bucket, (versioning, lock)) in enumerate(expect.items()):
        target = dataclasses.replace(s3_server.target(bucket), name="s3")
        code, doc, err = _check(_setup(tmp_path / str(i), target), "s3")
        assert code == 0, (bucket, doc, err)
        assert doc["ok"] is True and doc["type"] == "s3" and doc["target"] == "s3"
        assert [s["step"] for s in doc["steps"]] == ["list", "write", "read", "delete"]
        assert all(s["ok"] and s["error"] is None and s["seconds"] >= 0 for s in doc["steps"])
        assert (doc["versioning"], doc["object_lock"]) == (versioning, lock)
        left_version = any("left a version" in n for n in doc["notes"])
        assert left_version is (versioning == "enabled")


def test_locked_bucket_accepts_a_backup_sized_multipart_put(s3_server: S3Server) -> None:
    """Object Lock needs Content-MD5 on PutObject and UploadPart (moto enforces it)."""
    locked = f"{s3_server.make_bucket()}-lock"
    client = s3_server.client()
    client.create_bucket(Bucket=locked, ObjectLockEnabledForBucket=True)
    client.put_object_lock_configuration(Bucket=locked, ObjectLockConfiguration={
        "ObjectLockEnabled": "Enabled",
        "Rule": {"DefaultRetention": {"Mode": "GOVERNANCE", "Days": 1}}})
    storage = open_target(s3_server.target(locked))
    data = os.urandom(11 * MiB)
    storage.put("big", [data])
    storage.put("small", [b"x"])
    assert b"".join(storage.get("big")) == data


def test_max_parts_scales_part_growth(s3_server: S3Server) -> None:
    bucket = s3_server.make_bucket()
    storage = open_target(s3_server.target(bucket, max_parts=3))
    data = os.urandom(30 * MiB)  # 5 + 10 + 20 MiB: three parts, growing every part
    storage.put("k", (data[i:i + MiB] for i in range(0, len(data), MiB)))
    head = s3_server.client().head_object(Bucket=bucket, Key="prod/k", PartNumber=1)
    assert head["PartsCount"] == 3
    assert b"".join(storage.get("k")) == data
    with pytest.raises(StorageError, match="more than 2 parts"):
        open_target(s3_server.target(bucket, max_parts=2)).put(
            "k2", (data[i:i + MiB] for i in range(0, len(data), MiB)))


def test_sftp_connect_step_and_refused_host_key(tmp_path: Path, sshd_server: SshServer) -> None:
    good = dataclasses.replace(sshd_server.target(sshd_server.new_dir()), name="box")
    code, doc, _ = _check(_setup(tmp_path / "a", good), "box")
    assert code == 0, doc
    assert [s["step"] for s in doc["steps"]] == ["connect", "list", "write", "read", "delete"]
    assert doc["versioning"] is None and doc["object_lock"] is None and doc["notes"]
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    bad = dataclasses.replace(good, options={**good.options, "known_hosts_file": str(empty)})
    code, doc, err = _check(_setup(tmp_path / "b", bad), "box")
    assert code == 4
    assert doc["ok"] is False
    [step] = doc["steps"]
    assert step["step"] == "connect" and not step["ok"]
    assert sshd_server.fingerprint in step["error"] and "ssh-keyscan" in err


def test_azure_and_gcs_checks(tmp_path: Path, azurite_server: AzuriteServer,
                              gcs_server: GcsServer) -> None:
    az = dataclasses.replace(azurite_server.target(azurite_server.make_container()),
                             name="az")
    code, doc, err = _check(_setup(tmp_path / "az", az), "az")
    assert code == 0, err
    assert doc["ok"] and doc["object_lock"] in (False, None)
    gs = dataclasses.replace(gcs_server.target(gcs_server.make_bucket()), name="gs")
    code, doc, err = _check(_setup(tmp_path / "gs", gs), "gs")
    assert code == 0, err
    assert doc["ok"] and doc["versioning"] in ("disabled", None)
    missing = dataclasses.replace(gcs_server.target("no-such-bucket"), name="gs")
    code, doc, err = _check(_setup(tmp_path / "gs2", missing), "gs")
    assert code == 4 and doc["steps"][0]["step"] == "list"
    assert "no-such-bucket" in doc["steps"][0]["error"]


def test_local_text_output(tmp_path: Path) -> None:
    setup = _setup(tmp_path, local_target(tmp_path / "backups"))
    proc = setup.run("target", "check", "local")
    assert proc.returncode == 0, proc.stderr
    assert "delete ok" in proc.stdout and "versioning: unknown" in proc.stdout


def test_verbose_check_shows_no_secret(tmp_path: Path, azurite_server: AzuriteServer,
                                       sshd_server: SshServer) -> None:
    container = azurite_server.make_container()
    token = sas(container, read=True, list=True, write=True, delete=True)
    az = TargetConfig("az", "azure", {"container": container, "sas_token": token,
                                      "endpoint": azurite_server.endpoint})
    code, doc, err = _check(_setup(tmp_path / "az", az), "az")
    assert code == 0 and doc["ok"], err
    proc = _setup(tmp_path / "az2", az).run("-vv", "target", "check", "az")
    assert proc.returncode == 0, proc.stderr
    sig = token.split("sig=")[1].split("&")[0]
    assert sig not in proc.stdout + proc.stderr
    box = dataclasses.replace(sshd_server.target(sshd_server.new_dir(), private_key_file="",
                                                 password="pw-never-shown"), name="box")
    proc = _setup(tmp_path / "box", box).run("-vv", "target", "check", "box")
    assert proc.returncode == 4
    assert "pw-never-shown" not in proc.stdout + proc.stderr
    assert "password" in proc.stderr



def test_s3_denied_names_the_permission() -> None:
    """moto's IAM cannot make a second user here; the mapping is a pure unit."""
    from botocore.exceptions import ClientError

    from dbcrate.storage.s3.errors import Where, translate

    where = Where(bucket="b", endpoint="http://x", secrets=("SECRET",))
    denied = ClientError({"Error": {"Code": "AccessDenied", "Message": "no"}}, "PutObject")
    for op, perm in (("put object", "s3:PutObject"), ("upload part 3", "s3:PutObject"),
                     ("list objects", "s3:ListBucket"), ("get object", "s3:GetObject"),
                     ("delete object", "s3:DeleteObject")):
        err = translate(denied, op, where, "k")
        assert perm in err.message and perm in (err.hint or ""), op
