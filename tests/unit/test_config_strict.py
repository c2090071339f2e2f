"""Config strictness: every accepted key pinned, a typo in each kind of table refused
naming file and key, engine options checked against the job's engine, job names that
cannot be object keys refused, encryption never silently off (file and in memory)."""

from __future__ import annotations

import dataclasses
import subprocess
from pathlib import Path

import pytest

from dbcrate import config
from dbcrate.config import JobConfig, TargetConfig
from dbcrate.config.keys import ENGINE_OPTIONS, TARGET_KEYS
from dbcrate.errors import ConfigError
from dbcrate.operations.pipeline import encode_plan
from tests.lib.config_cases import KEY, LOCAL, PRECEDENCE, RECIPIENT, precedence_config
from tests.lib.e2e import DBCRATE


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "dbcrate.toml"
    p.write_text(text)
    return p


def refused(tmp_path: Path, text: str) -> ConfigError:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.exit_code == 2
    assert str(path) in info.value.message
    return info.value


# -- the accepted keys, pinned -------------------------------------------------------------

EVERY_KEY = f"""
[backup]
recipients = ["{RECIPIENT}"]
encryption_key = "{KEY}"
encryption = "age"
encrypt = true
compression = "gzip"
compression_level = 5
compress = true
retention = {{ daily = 1, weekly = 2, monthly = 3, days = 4 }}
retention_days = 9

[backup.targets.disk]
type = "local"
path = "/var/backups"

[backup.targets.s3]
type = "s3"
bucket = "b"
endpoint = "http://127.0.0.1:9000"
region = "eu-west-1"
prefix = "p"
access_key = "AK"
secret_key = "SK"
session_token = "ST"
path_style = true
part_size = 8
storage_class = "STANDARD_IA"
checksums = "when_supported"
verify_tls = false
ca_bundle = "/etc/ssl/private-ca.pem"
connect_timeout = 3
read_timeout = 4
max_attempts = 2
abort_timeout = 5
max_parts = 1000

[backup.targets.box]
type = "sftp"
host = "h"
port = 22
user = "u"
path = "/p"
private_key_file = "/k"
private_key_passphrase = "pp"
password = "pw"
connect_timeout = 5
known_hosts_file = "/kh"
host_key_fingerprint = "SHA256:x"
max_attempts = 2

[backup.targets.g]
type = "gcs"
bucket = "b"
prefix = "p"
credentials_file = "/c.json"
endpoint = "http://x"
storage_class = "NEARLINE"
chunk_size = 8
max_attempts = 2

[backup.targets.az]
type = "azure"
container = "c"
prefix = "p"
endpoint = "http://x"
block_size = 4
tier = "Cool"
connection_string = "cs"
account_name = "an"
account_key = "ak"
sas_token = "sas"
max_attempts = 2

[[backup.jobs]]
name = "pg"
database = "orders"
engine = "postgres"
url = "postgresql://u@h:5432/orders"
password = "pw"
schedule = "0 3 * * *"
targets = ["disk", "s3"]
pg_bin_dir = "/usr/lib/postgresql/17/bin"
fetch_tools = false
cache_dir = "/c"
globals = true
staging_dir = "/s"
schemas = ["a"]
exclude_schemas = ["b"]
tables = ["c"]
exclude_tables = ["d"]
maintenance_db = "template1"
mode = "physical"
archive = "command"
partial_interval = "10s"
max_rpo = "5m"

[[backup.jobs]]
name = "my"
engine = "mysql"
url = "mysql://u@h/shop"
target = "disk"
dump_options = ["--hex-blob"]
dump_tool = "/usr/bin/mariadb-dump"
client_tool = "/usr/bin/mariadb"

[[backup.jobs]]
name = "rd"
engine = "redis"
url = "redis://h:6379/0"
targets = "disk"
[backup.jobs.options]
redis_cli_path = "redis-cli"
redis_server_path = "redis-server"
tls = false
tls_cacert = "/a"
tls_cert = "/b"
tls_key = "/c"
tls_sni = "h"
tls_insecure = false
stop_command = ["x"]
start_command = ["y"]
rdb_path = "/r"
start_timeout = 5
temp_dir = "/t"
zero_sync_delay = true

[[backup.jobs]]
name = "mg"
engine = "mongodb"
url = "mongodb://u@h/app"
targets = ["disk"]
mongodump_path = "mongodump"
mongorestore_path = "mongorestore"
mongosh_path = "mongosh"
version_probe = "none"
temp_dir = "/t"
"""


def test_every_documented_key_is_accepted(tmp_path: Path) -> None:
    cfg = config.load(write(tmp_path, EVERY_KEY))
    assert set(cfg.jobs) == {"pg", "my", "rd", "mg"}
    assert {t.type for t in cfg.targets.values()} == {"local", "s3", "sftp", "gcs", "azure"}
    assert cfg.job("pg").options["globals"] is True
    assert cfg.job("rd").options["zero_sync_delay"] is True
    assert cfg.job("mg").options["temp_dir"] == "/t"
    assert cfg.target("s3").options["prefix"] == "p"
    assert cfg.job("pg").compression == "gzip" and cfg.job("pg").encryption == "age"
    # the lists the parser checks against are the ones this file uses, no more
    for kind, keys in TARGET_KEYS.items():
        [t] = [t for t in cfg.targets.values() if t.type == kind]
        assert set(t.options) == keys, kind
    for job in cfg.jobs.values():
        assert set(job.options) == ENGINE_OPTIONS[job.engine], job.engine


def test_secret_file_variants_of_target_keys(tmp_path: Path) -> None:
    (tmp_path / "s").write_text("from-a-file\n")
    cfg = config.load(write(tmp_path, f"""
[backup.targets.az]
type = "azure"
container = "c"
sas_token_file = "{tmp_path / 's'}"
[backup.targets.box]
type = "sftp"
host = "h"
private_key_passphrase_file = "{tmp_path / 's'}"
[[backup.jobs]]
database = "d"
encrypt = false
target = "az"
"""))
    assert cfg.target("az").options["sas_token"] == "from-a-file"
    assert cfg.target("box").options["private_key_passphrase"] == "from-a-file"


# -- a typo in each kind of table ------------------------------------------------------------

JOB = '[[backup.jobs]]\ndatabase = "d"\nencrypt = false\n'

TYPOS = {
    "top level": ("[bakup]\nx = 1\n", "bakup", "unknown key"),
    "[backup]": ('[backup]\ncompresion = "gzip"\n' + LOCAL + JOB, "backup.compresion",
                 "did you mean compression"),
    "local target": ('[backup.targets.l]\ntype = "local"\npth = "/x"\n' + JOB,
                     "backup.targets.l.pth", "unknown key"),
    "s3 target": ('[backup.targets.s]\ntype = "s3"\nbucket = "b"\nprefx = "p"\n' + JOB,
                  "backup.targets.s.prefx", "did you mean prefix"),
    "s3 secret on local": ('[backup.targets.l]\npath = "/x"\nsecret_key_file = "/nope"\n' + JOB,
                           "backup.targets.l.secret_key_file", "unknown key"),
    "unknown target type": ('[backup.targets.l]\ntype = "ftp"\npath = "/x"\n' + JOB,
                            "backup.targets.l.type", "unknown target type 'ftp'"),
    "job": (LOCAL + JOB + 'shedule = "x"\n', "backup.jobs[0].shedule", "did you mean schedule"),
    "job.options": (LOCAL + JOB + 'options = { globls = true }\n',
                    "backup.jobs[0].options.globls", "did you mean globals"),
    "job retention": (LOCAL + JOB + "retention = { daly = 3 }\n",
                      "backup.jobs[0].retention.daly", "unknown key"),
    "[backup] retention": ("[backup]\nretention = { weekley = 3 }\n" + LOCAL + JOB,
                           "backup.retention.weekley", "unknown key"),
}


@pytest.mark.parametrize("case", list(TYPOS))
def test_a_typo_in_each_kind_of_table_is_refused(tmp_path: Path, case: str) -> None:
    text, key, fragment = TYPOS[case]
    err = refused(tmp_path, text)
    assert f": {key}: " in err.message, err.message
    assert fragment in err.message + " " + err.hint, (err.message, err.hint)


ENGINE_MISMATCH = {
    "globals on mysql": ('engine = "mysql"\nurl = "mysql://u@h/d"\nglobals = true\n',
                         "backup.jobs[0].globals", "globals is a postgres option",
                         "does not apply to mysql jobs"),
    "options.globals on mysql": ('engine = "mysql"\nurl = "mysql://u@h/d"\n'
                                 'options = { globals = true }\n',
                                 "backup.jobs[0].options.globals",
                                 "globals is a postgres option", "does not apply to mysql jobs"),
    "dump_options on postgres": ('dump_options = ["--hex-blob"]\n',
                                 "backup.jobs[0].dump_options", "is a mysql option",
                                 "does not apply to postgres jobs"),
    "temp_dir on postgres": ("temp_dir = '/t'\n", "backup.jobs[0].temp_dir",
                             "is a redis and mongodb option", "postgres jobs"),
    "rdb_path on mongodb": ('engine = "mongodb"\nurl = "mongodb://h/d"\nrdb_path = "/r"\n',
                            "backup.jobs[0].rdb_path", "is a redis option", "mongodb jobs"),
}


@pytest.mark.parametrize("case", list(ENGINE_MISMATCH))
def test_engine_options_must_belong_to_the_jobs_engine(tmp_path: Path, case: str) -> None:
    extra, key, what, engine = ENGINE_MISMATCH[case]
    err = refused(tmp_path, LOCAL + JOB + extra)
    assert f": {key}: " in err.message and what in err.message and engine in err.message, (
        err.message)


@pytest.mark.parametrize("name", ["", "..", "../etc", "/abs", "a/b", "a\\b", "tab\there",
                                  "nl\nx", "del\x7f", ".", " padded", "a..b"])
def test_job_names_that_cannot_be_object_keys_are_refused(tmp_path: Path, name: str) -> None:
    text = LOCAL + JOB.replace('database = "d"', f"name = {toml_str(name)}")
    err = refused(tmp_path, text)
    assert "backup.jobs[0].name" in err.message, err.message


def test_a_database_name_that_cannot_be_a_job_name_says_to_set_name(tmp_path: Path) -> None:
    err = refused(tmp_path, LOCAL + JOB.replace('"d"', '"sales/eu"'))
    assert "backup.jobs[0].database" in err.message and "set name" in err.hint


def toml_str(s: str) -> str:
    out = s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\t", "\\t")
    return '"' + out.replace("\x7f", "\\u007f") + '"'


def test_non_utf8_config_is_exit_2_naming_the_file(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes('[backup]\n# Sicherung für Jörg\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match="not UTF-8"):
        config.load(path)
    proc = subprocess.run([DBCRATE, "--config", str(path), "list"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert str(path) in proc.stderr and "not UTF-8" in proc.stderr
    assert "hint: " in proc.stderr and "Traceback" not in proc.stderr


def test_job_name_with_dotdot_is_exit_2_at_load_from_the_cli(tmp_path: Path) -> None:
    path = write(tmp_path, LOCAL + '[[backup.jobs]]\nname = "../up"\ndatabase = "d"\n'
                 "encrypt = false\n")
    proc = subprocess.run([DBCRATE, "--config", str(path), "backup"], capture_output=True,
                          text=True, timeout=60, check=False)
    assert proc.returncode == 2, proc.stderr
    assert "backup.jobs[0].name" in proc.stderr and "Traceback" not in proc.stderr


# -- encryption precedence ---------------------------------------------------------------------

@pytest.mark.parametrize("case", list(PRECEDENCE))
def test_encryption_precedence(tmp_path: Path, case: str) -> None:
    backup, job, expected = PRECEDENCE[case]
    text = precedence_config(backup, job)
    if expected.startswith("!"):
        err = refused(tmp_path, text)
        assert f": {expected[1:]}: " in err.message, err.message
        return
    cfg = config.load(write(tmp_path, text))
    assert cfg.job("j").encryption == expected
    plan = encode_plan(cfg.job("j"))
    assert plan.encryption == expected
    assert ("age" in plan.stages or "aes-256-gcm" in plan.stages) == (expected != "none")


def _job(**kw: object) -> JobConfig:
    base: dict[str, object] = {"name": "j", "engine": "postgres",
                               "url": "postgresql://h/d", "targets": ("l",)}
    return JobConfig(**{**base, **kw})  # type: ignore[arg-type]


@pytest.mark.parametrize(("kw", "key"), [
    ({"encryption": "rot13"}, "encryption"),
    ({"encryption": "AGE"}, "encryption"),
    ({"encryption": ""}, "encryption"),
    ({"encryption": "age"}, "recipients"),
    ({"encryption": "aes-256-gcm"}, "encryption_key"),
    ({"encryption": "aes-256-gcm", "encryption_key": b"short"}, "encryption_key"),
    ({"compression": "lz4"}, "compression"),
    ({"engine": "oracle"}, "engine"),
    ({"name": "../x"}, "<memory>: jobs.name"),
    ({"options": {"globals": True}, "engine": "mysql"}, "options.globals"),
])
def test_in_memory_job_configs_are_validated(kw: dict[str, object], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        _job(**kw)
    where = key if key.startswith("<") else f"<memory>: jobs.j.{key}"
    assert info.value.message.startswith(f"{where}: "), info.value.message
    assert info.value.exit_code == 2


def test_encode_plan_never_falls_through_to_plaintext() -> None:
    """Even a JobConfig mutated past its validation is refused, not stored in the clear."""
    job = _job(encryption="age", recipients=(RECIPIENT,))
    assert encode_plan(job).stages == ("zstd", "age")
    for value in ("rot13", "aes-256-gcm", "age"):
        bad = dataclasses.replace(job)
        object.__setattr__(bad, "encryption", value)
        object.__setattr__(bad, "recipients", ())
        with pytest.raises(ConfigError):
            encode_plan(bad)


def test_in_memory_target_configs_are_validated() -> None:
    TargetConfig(name="l", type="local", options={"path": "/x"})
    with pytest.raises(ConfigError, match=r"backup.targets.l.pth: unknown key"):
        TargetConfig(name="l", type="local", options={"pth": "/x"})
    with pytest.raises(ConfigError, match=r"backup.targets.l.type: unknown target type"):
        TargetConfig(name="l", type="ftp", options={})


@pytest.mark.parametrize("table", ['type = "s3"\nbucket = "b"\nprefx = "prod"',
                                   'type = "local"\npth = "/tmp/x"'])
def test_a_target_typo_stops_the_backup_before_anything_runs(tmp_path: Path, table: str) -> None:
    """The issue's case: a typo in a target table used to send the backup elsewhere with
    exit 0; now the CLI refuses the config (exit 2) and nothing is written."""
    path = write(tmp_path, f"[backup.targets.t]\n{table}\n" + JOB)
    proc = subprocess.run([DBCRATE, "--config", str(path), "backup"], capture_output=True,
                          text=True, timeout=60, check=False, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    key = table.rsplit("\n", 1)[1].split(" ")[0]
    assert f"{path}: backup.targets.t.{key}: unknown key" in proc.stderr
    assert "did you mean" in proc.stderr and "Traceback" not in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dbcrate.toml"]
