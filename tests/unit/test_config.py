"""Config: the DESIGN.md shape, the seed's keys, secrets, and errors naming file and key."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from dbcrate import config
from dbcrate.errors import ConfigError, SecretError, UsageError

KEY = base64.b64encode(bytes(range(32))).decode()
RECIPIENT = "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "dbcrate.toml"
    p.write_text(text)
    return p


def test_design_shape(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "pg").write_text("s3cret\n")
    (tmp_path / "s3").write_text("SECRETKEY")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    cfg = config.load(write(tmp_path, f"""
[backup]
recipients = ["{RECIPIENT}"]
compression = "zstd"

[backup.targets.local]
type = "local"
path = "/var/lib/dbcrate/backups"

[backup.targets.s3]
type = "s3"
bucket = "acme"
access_key = "${{AWS_ACCESS_KEY_ID}}"
secret_key_file = "{tmp_path / 's3'}"

[[backup.jobs]]
name = "orders"
engine = "postgres"
url = "postgresql://backup@db1:5432/orders"
password_file = "{tmp_path / 'pg'}"
schedule = "0 3 * * *"
targets = ["s3", "local"]
retention = {{ daily = 7, weekly = 4, monthly = 12 }}
"""))
    job = cfg.job("orders")
    assert job.password == "s3cret"
    assert job.targets == ("s3", "local")
    assert job.encryption == "age" and job.recipients == (RECIPIENT,)
    assert job.compression == "zstd"
    assert job.retention.daily == 7 and job.retention.monthly == 12
    s3 = cfg.target("s3")
    assert s3.options["access_key"] == "AKIATEST"
    assert s3.options["secret_key"] == "SECRETKEY"
    assert "secret_key_file" not in s3.options
    assert "s3cret" not in repr(job) and "SECRETKEY" not in repr(s3)


def test_seed_keys(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, f"""
[backup]
encryption_key = "{KEY}"

[backup.targets.local]
path = "/var/lib/voxeltron/backups"

[backup.targets.s3]
endpoint   = "https://s3.amazonaws.com"
bucket     = "my-backups"

[[backup.jobs]]
database       = "mydb"
schedule       = "0 3 * * *"
target         = "s3"
compress       = true
encrypt        = true
retention_days = 30

[[backup.jobs]]
database       = "mycache"
target         = "local"
compress       = false
encrypt        = false
"""))
    mydb = cfg.job("mydb")
    assert mydb.url == "postgresql://localhost:5432/mydb"
    assert mydb.encryption == "aes-256-gcm" and mydb.encryption_key == bytes(range(32))
    assert mydb.retention.days == 30 and mydb.retention.daily is None
    assert mydb.targets == ("s3",)
    cache = cfg.job("mycache")
    assert cache.compression == "none" and cache.encryption == "none"
    assert cfg.target("local").type == "local" and cfg.target("s3").type == "s3"


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ('[backup]\ncompression = "lz4"\n[backup.targets.l]\npath="/x"\n'
         '[[backup.jobs]]\ndatabase="d"\nencrypt=false', "backup.jobs[0].compression", "lz4"),
        ('[backup.targets.l]\npath="/x"\n[[backup.jobs]]\ndatabase="d"',
         "backup.jobs[0].encrypt", "no recipients"),
        ('[backup.targets.l]\npath="/x"\n[[backup.jobs]]\ndatabase="d"\nencrypt=false\n'
         'target="nope"', "backup.jobs[0].targets", "nope"),
        ('[backup.targets.l]\npath="/x"\n[[backup.jobs]]\ndatabase="d"\nencrypt=false\n'
         'colour="red"', "backup.jobs[0].colour", "unknown key"),
        ('[backup]\nencryption_key="c2hvcnQ="\n[backup.targets.l]\npath="/x"\n'
         '[[backup.jobs]]\ndatabase="d"', "backup.jobs[0].encryption_key", "32 bytes"),
        ('[backup.targets.l]\npath="/x"\n[[backup.jobs]]\ndatabase="d"\nencrypt=false\n'
         'engine="oracle"', "backup.jobs[0].engine", "oracle"),
        ('[backup.targets.x]\nfoo=1\n', "backup.targets.x.type", "cannot infer"),
    ],
)
def test_errors_name_file_and_key(tmp_path: Path, body: str, key: str, fragment: str) -> None:
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    msg = info.value.message
    assert str(path) in msg and key in msg and fragment in msg, msg
    assert info.value.exit_code == 2


def test_missing_env_secret_names_variable_not_value(tmp_path: Path) -> None:
    path = write(tmp_path, '[backup.targets.l]\npath="/x"\n[[backup.jobs]]\ndatabase="d"\n'
                 'encrypt=false\npassword="${DBCRATE_TEST_UNSET_VAR}"')
    with pytest.raises(SecretError, match="DBCRATE_TEST_UNSET_VAR"):
        config.load(path)


def test_invalid_toml_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="invalid TOML"):
        config.load(write(tmp_path, "[backup\n"))
    with pytest.raises(ConfigError, match="no config file found"):
        config.find_config(str(tmp_path / "absent.toml"))


def test_unknown_job_lists_known(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, '[backup.targets.l]\npath="/x"\n[[backup.jobs]]\n'
                            'database="d"\nencrypt=false'))
    with pytest.raises(UsageError) as info:
        cfg.job("other")
    assert "d" in info.value.hint
