"""SFTP target details against a real sshd: host keys, credentials, modes, cut uploads."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

from dbcrate.errors import ConfigError, StorageError
from dbcrate.storage import open_target
from dbcrate.storage.sftp import SftpStorage
from tests.servers.sshd import SshServer, start_sshd

MiB = 1 << 20


def _raw(root: Path) -> list[str]:
    return sorted(str(Path(d, f).relative_to(root)) for d, _, fs in os.walk(root) for f in fs)


def test_modes_and_owner(sshd_server: SshServer) -> None:
    where = sshd_server.new_dir()
    storage = open_target(sshd_server.target(where / "deep" / "root"))
    storage.put("a/b/c.bin", [b"data"])
    f = where / "deep" / "root" / "a" / "b" / "c.bin"
    assert f.read_bytes() == b"data"
    assert f.stat().st_mode & 0o777 == 0o600
    assert f.stat().st_uid == sshd_server.uid
    for d in (where / "deep", where / "deep" / "root", f.parent):
        assert d.stat().st_mode & 0o777 == 0o700, d


def test_pinned_fingerprint_accepted_and_wrong_one_refused(sshd_server: SshServer) -> None:
    where = sshd_server.new_dir()
    ok = open_target(sshd_server.target(where, known_hosts_file="/nonexistent",
                                        host_key_fingerprint=sshd_server.fingerprint))
    ok.put("x", [b"1"])
    bad = open_target(sshd_server.target(where, known_hosts_file="/nonexistent",
                                         host_key_fingerprint="SHA256:" + "A" * 43))
    with pytest.raises(StorageError) as caught:
        bad.put("y", [b"2"])
    msg = caught.value.message
    assert sshd_server.fingerprint in msg
    assert f"127.0.0.1:{sshd_server.port}" in msg
    assert "host_key_fingerprint" in msg
    assert "ssh-keyscan" in (caught.value.hint or "")
    assert _raw(where) == ["x"]


def test_unknown_host_key_refused_before_login(sshd_server: SshServer, tmp_path: Path) -> None:
    where = sshd_server.new_dir()
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    storage = open_target(sshd_server.target(where, known_hosts_file=str(empty)))
    with pytest.raises(StorageError) as caught:
        storage.put("x", [b"1"])
    assert sshd_server.fingerprint in caught.value.message
    assert str(empty) in caught.value.message
    assert caught.value.exit_code == 4
    assert _raw(where) == []


def test_changed_host_key_refused(tmp_path: Path, sshd_server: SshServer) -> None:
    """A second server on another host key, reached with the first one's known_hosts."""
    other = start_sshd(Path(tempfile.mkdtemp(prefix="dbcrate-sshd2-")))
    try:
        known = tmp_path / "known_hosts"
        pinned = sshd_server.known_hosts.read_text().split(" ", 1)[1]
        known.write_text(f"[127.0.0.1]:{other.port} {pinned}")
        where = other.new_dir()
        storage = open_target(other.target(where, known_hosts_file=str(known)))
        with pytest.raises(StorageError, match="not trusted") as caught:
            storage.probe()
        assert other.fingerprint in caught.value.message
        assert sshd_server.fingerprint not in caught.value.message
        assert _raw(where) == []
    finally:
        other.stop()
        shutil.rmtree(other.home, ignore_errors=True)


def test_wrong_credentials_name_the_credential(sshd_server: SshServer, tmp_path: Path) -> None:
    import subprocess

    key = tmp_path / "stranger"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    where = sshd_server.new_dir()
    storage = open_target(sshd_server.target(where, private_key_file=str(key)))
    with pytest.raises(StorageError) as caught:
        storage.probe()
    assert "refused" in caught.value.message
    assert str(key) in caught.value.message
    pw = open_target(sshd_server.target(where, private_key_file="", password="s3cret-pw"))
    with pytest.raises(StorageError) as caught:
        pw.probe()
    assert "password" in caught.value.message
    assert "s3cret-pw" not in caught.value.message + str(caught.value.hint) + repr(pw)


def test_denied_write_names_the_path(sshd_server: SshServer) -> None:
    where = sshd_server.new_dir()
    os.chown(where, 0, 0)
    where.chmod(0o755)
    storage = open_target(sshd_server.target(where))
    with pytest.raises(StorageError, match="failed at step 'write'") as caught:
        storage.probe()
    assert str(where) in (caught.value.hint or "")
    assert "write on path" in (caught.value.hint or "")


def test_put_cut_off_by_server_stop_leaves_nothing_listed(sshd_server: SshServer) -> None:
    where = sshd_server.new_dir()
    storage = open_target(sshd_server.target(where))
    assert isinstance(storage, SftpStorage)
    storage.put("keep", [b"old"])
    sent = threading.Event()

    def source() -> Iterator[bytes]:
        for i in range(64):
            if i == 4:
                sshd_server.kill_sessions()  # the server side of this connection dies
                sent.set()
            yield os.urandom(MiB)

    with pytest.raises(StorageError):
        storage.put("cut/obj", source())
    assert sent.is_set()
    assert [o.key for o in storage.list()] == ["keep"]
    temps = [f for f in _raw(where) if ".dbcrate-tmp-" in f]
    # the connection was gone, so the temp file may remain: never listed, swept later
    assert storage.leftovers("", timedelta(0)) == 0  # its writer (this process) is alive
    for t in temps:
        os.utime(where / t, (0, 0))
        (where / t).rename(where / t.replace(f"-{os.getpid()}-", "-999999999-"))
    assert storage.leftovers("", timedelta(hours=1), remove=True) == len(temps)
    assert _raw(where) == ["keep"]


def test_config_errors() -> None:
    from dbcrate.config import TargetConfig

    with pytest.raises(ConfigError, match="absolute"):
        open_target(TargetConfig("s", "sftp", {"host": "h", "user": "u", "path": "rel"}))
    with pytest.raises(ConfigError, match="SHA256"):
        open_target(TargetConfig("s", "sftp", {"host": "h", "user": "u", "path": "/p",
                                               "host_key_fingerprint": "md5:xx"}))
    with pytest.raises(ConfigError, match="host"):
        open_target(TargetConfig("s", "sftp", {"user": "u", "path": "/p"}))
