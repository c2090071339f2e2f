"""Pure unit tests of the secret-hygiene pieces: the child environment allowlist, private
files for tools, URL redaction, secret url parameters, MariaDB option prefixes, local
directory modes and config errors that never echo a value."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from dbcrate import config
from dbcrate.engines.mongodb.engine import _config_file
from dbcrate.engines.mongodb.url import MongoTarget
from dbcrate.engines.mysql.engine import dump_options
from dbcrate.engines.postgres.url import PgTarget
from dbcrate.engines.process import PrivateFile, child_env, materialized
from dbcrate.errors import ConfigError
from dbcrate.redact import redact_url
from dbcrate.storage.local import LocalStorage

SECRET = "s3cr3t-Canary"


def test_child_env_is_an_allowlist() -> None:
    base = {
        "PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C", "TZ": "UTC",
        "TMPDIR": "/tmp/x", "AWS_SECRET_ACCESS_KEY": SECRET, "DB_PW": SECRET,
        "DBCRATE_RESTORE_PASSWORD": SECRET, "PGPASSWORD": SECRET, "KRB5CCNAME": "FILE:/k",
        "KRB5_CONFIG": "/etc/krb5.conf", "SSL_CERT_FILE": "/ca.pem",
        "DBCRATE_CHILD_ENV": "KRB5* SSL_CERT_FILE,DBCRATE_RESTORE_PASSWORD",
    }
    env = child_env({"PGPASSFILE": "/p"}, base=base)
    assert env == {"PATH": "/usr/bin", "HOME": "/root", "LANG": "C.UTF-8", "LC_ALL": "C",
                   "TZ": "UTC", "TMPDIR": "/tmp/x", "KRB5CCNAME": "FILE:/k",
                   "KRB5_CONFIG": "/etc/krb5.conf", "SSL_CERT_FILE": "/ca.pem",
                   "PGPASSFILE": "/p"}
    # a bare "*" passes nothing on
    assert "DB_PW" not in child_env(base={**base, "DBCRATE_CHILD_ENV": "*"})


def test_private_files_live_only_inside_the_block() -> None:
    with materialized({"PGSERVICEFILE": PrivateFile(f"[x]\nsslpassword={SECRET}\n"),
                       "PGSERVICE": "x"}) as env:
        path = Path(env["PGSERVICEFILE"])
        assert env["PGSERVICE"] == "x"
        assert path.read_text() == f"[x]\nsslpassword={SECRET}\n"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert not path.exists() and not path.parent.exists()
    with pytest.raises(RuntimeError), materialized({"F": PrivateFile("x")}) as env:
        path = Path(env["F"])
        raise RuntimeError
    assert not path.parent.exists()
    assert SECRET not in repr(PrivateFile(SECRET))


@pytest.mark.parametrize(("url", "shown"), [
    (f"postgresql://app:{SECRET}@db:5432/x?sslmode=require", "postgresql://app:***@db:5432/x?sslmode=require"),
    (f"postgresql://app@db/x?sslpassword={SECRET}&application_name=a", "postgresql://app@db/x?sslpassword=***&application_name=a"),
    (f"postgresql://app@db/x?oauth_client_secret={SECRET}", "postgresql://app@db/x?oauth_client_secret=***"),
    (f"mysql://root:{SECRET}@h/db", "mysql://root:***@h/db"),
    (f"redis://:{SECRET}@h:6379/0", "redis://:***@h:6379/0"),
    (f"mongodb://u:{SECRET}@h1,h2/app?tlsCertificateKeyFilePassword={SECRET}&tls=true", "mongodb://u:***@h1,h2/app?tlsCertificateKeyFilePassword=***&tls=true"),
    (f"postgresql://u:p@{SECRET}/w@h/db", "postgresql://u:***@h/db"),
    (f"host=h password={SECRET} dbname=x", "host=h password=*** dbname=x"),
    ("postgresql://app@db/x", "postgresql://app@db/x"),
])  # fmt: skip
def test_redact_url(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_pg_secret_params_go_to_a_private_service_file() -> None:
    t = PgTarget.parse(f"postgresql://app:{SECRET}@db/x?sslpassword={SECRET}x&sslmode=require")
    assert SECRET not in t.tool_conninfo() and SECRET not in repr(t)
    env = t.tool_env()
    assert env["PGPASSWORD"] == SECRET and env["PGSSLMODE"] == "require"
    assert env["PGSERVICE"] == "dbcrate"
    service = env["PGSERVICEFILE"]
    assert isinstance(service, PrivateFile)
    assert service.content == f"[dbcrate]\nsslpassword={SECRET}x\n"
    assert not any(SECRET in v for k, v in env.items() if isinstance(v, str) and k != "PGPASSWORD")
    assert f"sslpassword={SECRET}x" in t.libpq_conninfo().replace("'", "")  # psycopg, in memory
    with pytest.raises(ConfigError, match="service"):
        PgTarget.parse(f"postgresql://app@db/x?service=prod&sslpassword={SECRET}")


def test_mongo_key_password_goes_to_the_config_file(tmp_path: Path) -> None:
    t = MongoTarget.parse(f"mongodb://u:{SECRET}@h/app?tls=true&tlsCertificateKeyFilePassword={SECRET}k")
    assert SECRET not in t.uri() and SECRET not in repr(t)
    assert t.uri() == "mongodb://u@h/app?tls=true"
    with _config_file(t, str(tmp_path)) as args:
        text = Path(args[1]).read_text()
    assert f'password: "{SECRET}"' in text and f'sslPEMKeyPassword: "{SECRET}k"' in text
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("opt", [
    "--pass=x", "--passw=x", "--result-f=/tmp/x", "--loose-password=x", "--PASSWORD=x",
    "--User=x", "--us=x", "--result_file=x", "--defaults-extra=/x", "--skip-comm",
    "--disable_comments",
    "--comments=OFF", "--enable-compact", "--tab=/x", "--po=1", "--protocol=pipe",
    "--all-d", "--databases", "-pX", "-uroot", "--=x",
])  # fmt: skip
def test_mysql_dump_options_refused_like_the_tool_reads_them(opt: str) -> None:
    with pytest.raises(ConfigError):
        dump_options([opt])


@pytest.mark.parametrize("opt", [
    "--single-transaction", "--skip-lock-tables", "--tables", "--no-data", "--compress",
    "--max-allowed-packet=1G", "--default-character-set=utf8mb4", "--comments",
    "--skip-dump-date", "--ignore-table=db.t", "--where=id>1", "--skip-triggers",
])  # fmt: skip
def test_mysql_dump_options_allowed(opt: str) -> None:
    assert dump_options([opt]) == (opt,)


def test_local_target_dirs_are_private(tmp_path: Path) -> None:
    root = tmp_path / "a" / "b"
    store = LocalStorage(root)
    store.put("job/2026/12/01/x.dump", [b"data"])
    for d in (tmp_path / "a", root, root / "job", root / "job/2026/12/01"):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE((root / "job/2026/12/01/x.dump").stat().st_mode) == 0o600


def test_recipient_error_never_echoes_the_value() -> None:
    identity = "AGE-SECRET-KEY-1QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"
    raw = {"backup": {"recipients": [identity], "targets": {"l": {"path": "/tmp/x"}},
                      "jobs": [{"name": "j", "engine": "redis", "url": "redis://h",
                                "targets": ["l"]}]}}
    with pytest.raises(ConfigError) as info:
        config.parse(raw)
    text = f"{info.value.message} {info.value.hint}"
    assert "entry 1" in text and "age-keygen -y" in text
    assert identity[:10] not in text


@pytest.mark.parametrize("url", [
    "mysql://u:Pa9/Xy7zq@h/db", "redis://:Pa9/Xy7zq@h/0", "postgresql://u:Pa9/Xy7zq@h:x/db",
    "mongodb://u:Pa9/Xy7zq@/db",
])  # fmt: skip
def test_url_errors_never_quote_a_password(url: str) -> None:
    from dbcrate.engines import Connection, open_engine

    engine = url.split(":")[0].replace("postgresql", "postgres")
    with pytest.raises(ConfigError) as info:
        open_engine(engine, Connection(url))
    for part in ("Pa9", "Xy7zq"):
        assert part not in f"{info.value.message} {info.value.hint}"
