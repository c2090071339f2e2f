"""Canary secrets never reach a child process's argv or environment (except the one
variable that hands a database password to its own tool), any output of backup, list and
restore at -vv, or the repr of a config or connection object.

The canaries: a password inside the job's url, an S3 secret key that comes from a
``${ENV}`` variable, ``$DBCRATE_RESTORE_PASSWORD``, and AWS keys in dbcrate's own
environment. Children are watched through /proc (cmdline and environ) while they run."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from pathlib import Path

from dbcrate import config
from dbcrate.engines import Connection
from tests.lib.e2e import local_target, make_setup
from tests.lib.procs import ArgvWatcher
from tests.servers.postgres import PgDatabase, new_db_name
from tests.servers.redis import RedisServer, checksums, load_sample
from tests.servers.s3 import S3Server

URL_PW = "canaryUrlPw7c41d0"
RESTORE_PW = "canaryRestorePw2b9e"
AWS_SECRET = "canaryAwsSecret5d3f"
SSL_PW = "canarySslKeyPw8a1c"
ENV_SOURCE = "DBCRATE_TEST_CANARY_S3_SECRET"
#: variables whose names must not reach any child
SOURCE_NAMES = (ENV_SOURCE, "DBCRATE_RESTORE_PASSWORD", "AWS_SECRET_ACCESS_KEY",
                "AWS_ACCESS_KEY_ID", "CANARY_SOURCE_PW")


def _env(raw: bytes) -> dict[str, str]:
    pairs = (item.decode("utf-8", "replace").partition("=") for item in raw.split(b"\0"))
    return {k: v for k, _, v in pairs if k}


def test_canaries_absent_from_children_output_and_reprs(
    tmp_path: Path, pg_db: PgDatabase, s3_server: S3Server
) -> None:
    server = pg_db.server
    with server.connect("postgres") as conn:
        conn.execute(f"CREATE ROLE canary_b LOGIN SUPERUSER PASSWORD '{URL_PW}'")
        conn.execute(f"CREATE ROLE canary_r LOGIN SUPERUSER PASSWORD '{RESTORE_PW}'")
    s3_secret = s3_server.secret_key
    # sslpassword: a secret url parameter (unused here: no client key), via a private file
    url = pg_db.url.replace(f"{server.user}@", f"canary_b:{URL_PW}@", 1)
    url += f"?sslpassword={SSL_PW}"
    bucket = s3_server.make_bucket("canary")
    setup = make_setup(tmp_path / "cfg", url=url, password="unused", compression="none",
                       targets=[s3_server.target(bucket)])
    # the password comes from the url; the S3 secret key from ${ENV}
    text = setup.config.read_text()
    text = re.sub(r"(?m)^password_file = .*\n", "", text)
    text = re.sub(r'(?m)^secret_key_file = .*$', f'secret_key = "${{{ENV_SOURCE}}}"', text)
    setup.config.write_text(text)
    env = {ENV_SOURCE: s3_secret, "DBCRATE_RESTORE_PASSWORD": RESTORE_PW,
           "AWS_SECRET_ACCESS_KEY": AWS_SECRET, "AWS_ACCESS_KEY_ID": "AKIACANARY",
           "CANARY_SOURCE_PW": URL_PW}
    restored = new_db_name("canary")
    # a password inside --to too (the user's own argv): never echoed
    to = server.url(restored).replace(f"{server.user}@", f"canary_r:{RESTORE_PW}@", 1)
    outputs = []
    try:
        with ArgvWatcher() as watcher:
            outputs.append(setup.run("-vv", "backup", "orders", env=env, check=True))
            outputs.append(setup.run("-vv", "list", "orders", env=env, check=True))
            outputs.append(setup.run("-vv", "restore", "orders", "--latest", "--to", to,
                                     "--identity", str(setup.identity), env=env, check=True))
            outputs.append(setup.run("-vv", "grants", "orders", env=env, check=True))
        assert PgDatabase(server, restored).checksums() == pg_db.checksums()

        children = [c for c in watcher.descendants_of(str(setup.config).encode())
                    if str(setup.config).encode() not in c.cmdline]
        names = {c.comm for c in children}
        assert {"pg_dump", "pg_restore"} <= names, names
        everything = (URL_PW, RESTORE_PW, s3_secret, AWS_SECRET, SSL_PW)
        for child in children:
            for secret in everything:
                assert secret.encode() not in child.cmdline, child.cmdline
            child_env = _env(child.environ)
            for name in SOURCE_NAMES:
                assert name not in child_env, (child.cmdline, name)
            for key, value in child_env.items():
                for secret in everything:
                    if secret in value:  # only a tool's own password variable
                        assert key == "PGPASSWORD" and value in (URL_PW, RESTORE_PW), key
        # the restore success line names the url, without its password
        assert "into postgresql://canary_r:***@" in outputs[2].stdout
        for proc in outputs:
            for stream in (proc.stdout, proc.stderr):
                for secret in everything:
                    assert secret not in stream, (proc.args, stream)
    finally:
        server.drop_database(restored)
        with server.connect("postgres") as conn:
            conn.execute("DROP ROLE canary_b")
            conn.execute("DROP ROLE canary_r")

    # reprs of what the config holds, and of the engine connection built from it
    os.environ[ENV_SOURCE] = s3_secret
    try:
        cfg = config.load(setup.config)
    finally:
        del os.environ[ENV_SOURCE]
    job = cfg.job("orders")
    shown = [repr(cfg), repr(job), repr(cfg.targets), str(job),
             repr(Connection(job.url, job.password, {**job.options, "sslpassword": URL_PW}))]
    for text in shown:
        for secret in (URL_PW, s3_secret, SSL_PW):
            assert secret not in text, text
    assert "canary_b:***@" in repr(job)


def test_redis_children_get_no_canary(
    tmp_path: Path, redis_factory: Callable[..., RedisServer]
) -> None:
    """redis-cli and the temporary redis-server of ``--mode copy`` get the allowlist too."""
    source, target = redis_factory(password=URL_PW), redis_factory(password=RESTORE_PW)
    load_sample(source, big_mib=16)  # so that redis-cli runs long enough to be seen
    url = source.url.replace("redis://", f"redis://:{URL_PW}@", 1)
    setup = make_setup(tmp_path / "cfg", url=url, password="unused", engine="redis",
                       targets=[local_target(tmp_path / "backups")])
    setup.config.write_text(re.sub(r"(?m)^password_file = .*\n", "", setup.config.read_text()))
    env = {"DBCRATE_RESTORE_PASSWORD": RESTORE_PW, "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
           "CANARY_SOURCE_PW": URL_PW}
    with ArgvWatcher() as watcher:
        outputs = [
            setup.run("-vv", "backup", "orders", env=env, check=True),
            setup.run("-vv", "restore", "orders", "--latest", "--mode", "copy", "--to",
                      target.url, "--identity", str(setup.identity), env=env, check=True),
        ]
    assert checksums(target) == checksums(source)
    marker = str(setup.config).encode()
    children = [c for c in watcher.descendants_of(marker) if marker not in c.cmdline]
    names = {c.comm for c in children}
    assert {"redis-cli", "redis-server"} <= names, names
    for child in children:
        child_env = _env(child.environ)
        assert not set(SOURCE_NAMES) & set(child_env), child.cmdline
        for secret in (URL_PW, RESTORE_PW, AWS_SECRET):
            assert secret.encode() not in child.cmdline
            assert all(secret not in v for k, v in child_env.items() if k != "REDISCLI_AUTH")
    for proc in outputs:
        for secret in (URL_PW, RESTORE_PW, AWS_SECRET):
            assert secret not in proc.stdout + proc.stderr
