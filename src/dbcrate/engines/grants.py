"""The least-privilege role a backup job needs, as the SQL / ACL that creates it.

``dbcrate grants JOB`` prints ``grants(engine, url, options)``: statements to run as an
administrator. They never hold a password (each script says how to set one), and they name
the user from the job's url; when the url connects as a superuser name (``postgres``,
``root``, ``default``) or names none, they create ``dbcrate_backup`` instead, to be put in
the url. docs/engines/*.md ("Least privilege") explain every privilege.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from dbcrate.engines.mongodb.url import MongoTarget
from dbcrate.engines.mysql.engine import quote_ident
from dbcrate.engines.mysql.url import MyTarget
from dbcrate.engines.postgres.url import PgTarget
from dbcrate.engines.redis.url import RedisTarget
from dbcrate.errors import ConfigError

#: the user the scripts create when the job's url has none or a superuser's
DEFAULT_USER = "dbcrate_backup"
_ADMIN_NAMES = ("postgres", "root", "default", "admin", "")


def _user(name: str | None) -> tuple[str, str]:
    """The user to create and a note when it is not the url's."""
    if name and name not in _ADMIN_NAMES:
        return name, ""
    shown = f"as {name!r}" if name else "without a user name"
    return DEFAULT_USER, (f"the job's url connects {shown}; this creates {DEFAULT_USER}: "
                          "put that user in the url")


def _pg_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def postgres(url: str, options: Mapping[str, Any]) -> str:
    """PostgreSQL 14+ (``pg_read_all_data``); older majors in comments."""
    t = PgTarget.parse(url)
    user, note = _user(t.params.get("user"))
    u, db = _pg_ident(user), _pg_ident(t.dbname)
    lit = "'" + u.replace("'", "''") + "'"
    lines = [
        f"-- least-privilege role for backing up database {t.dbname} (PostgreSQL 14+)",
        f"-- run as a superuser connected to that database: psql -d {_pg_ident(t.dbname)}",
        *([f"-- {note}"] if note else []),
        f"-- then set its password in psql: \\password {u}",
        f"CREATE ROLE {u} LOGIN;",
        f"GRANT CONNECT ON DATABASE {db} TO {u};",
        f"GRANT pg_read_all_data TO {u};",
        "-- pg_read_all_data does not cover large objects: grant the existing ones (run this",
        "-- again after new ones appear; PostgreSQL 18+: ALTER DEFAULT PRIVILEGES ... GRANT",
        "-- SELECT ON LARGE OBJECTS TO the role, for each role that creates them)",
        "DO $$DECLARE o oid; BEGIN FOR o IN SELECT oid FROM pg_largeobject_metadata LOOP",
        f"  EXECUTE format('GRANT SELECT ON LARGE OBJECT %s TO %s', o, {lit}); END LOOP; END$$;",
        "-- tables with row level security also need: ALTER ROLE ... BYPASSRLS;",
        "-- PostgreSQL 13 and older have no pg_read_all_data: in the database, per schema S:",
        f"--   GRANT USAGE ON SCHEMA S TO {u}; GRANT SELECT ON ALL TABLES IN SCHEMA S TO {u};",
        f"--   GRANT SELECT ON ALL SEQUENCES IN SCHEMA S TO {u};",
        "--   (and SELECT on each large object; new tables need ALTER DEFAULT PRIVILEGES)",
    ]
    if options.get("globals"):
        maint = _pg_ident(str(options.get("maintenance_db") or "postgres"))
        lines += [
            "-- globals = true: pg_dumpall --globals-only runs as this role too, through the",
            "-- maintenance database; pg_read_all_data reads pg_authid, so the globals hold",
            "-- every role's password hash (without pg_read_all_data: --no-role-passwords)",
            f"GRANT CONNECT ON DATABASE {maint} TO {u};",
        ]
    return "\n".join(lines) + "\n"


def mysql(url: str, options: Mapping[str, Any]) -> str:
    """MariaDB / MySQL: what mariadb-dump --single-transaction --routines --triggers
    --events needs for one database."""
    t = MyTarget.parse(url)
    user, note = _user(t.user)
    host = "%" if t.host not in ("localhost", "127.0.0.1", "::1") else t.host
    account = f"'{_sql_str(user)}'@'{_sql_str(host)}'"
    db = quote_ident(t.database)
    privileges = ["SELECT", "SHOW VIEW", "TRIGGER", "EVENT"]
    dump_options = options.get("dump_options")
    if isinstance(dump_options, list) and "--single-transaction" not in dump_options:
        privileges.append("LOCK TABLES")  # without a snapshot mariadb-dump locks tables
    lines = [
        f"-- least-privilege account for backing up database {t.database} (MariaDB/MySQL)",
        *([f"-- {note}"] if note else []),
        f"-- then set its password: ALTER USER {account} IDENTIFIED BY '...';",
        f"-- (host {host!r}: the host dbcrate connects from, as the server sees it)",
        f"CREATE USER {account};",
        f"GRANT {', '.join(privileges)} ON {db}.* TO {account};",
        "-- without TRIGGER (or the next grant) mariadb-dump leaves triggers (routines) out",
        "-- silently. Routines: MariaDB before 11.3 shows their bodies only with SELECT on",
        "-- mysql.proc (MariaDB 11.3+: SHOW CREATE ROUTINE ON the database instead; MySQL 8:",
        "-- GRANT SHOW_ROUTINE, PROCESS ON *.*: it has no mysql.proc)",
        f"GRANT SELECT ON `mysql`.`proc` TO {account};",
    ]
    return "\n".join(lines) + "\n"


def _sql_str(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "''")


def redis(url: str, options: Mapping[str, Any]) -> str:
    """Redis 6+ ACL for ``redis-cli --rdb`` and dbcrate's probe."""
    t = RedisTarget.parse(url, None, options)
    user, note = _user(t.user)
    rules = ["reset", "on", "+ping", "+select", "+info", "+sync", "+replconf"]
    lines = [
        "# least-privilege ACL user for backing up redis (Redis 6+; run in redis-cli)",
        *([f"# {note}"] if note else []),
        f"# then set its password: ACL SETUSER {user} >PASSWORD  (and ACL SAVE or CONFIG "
        "REWRITE to keep it)",
        f"ACL SETUSER {user} {' '.join(rules)}",
    ]
    if options.get("zero_sync_delay"):
        lines += ["# zero_sync_delay = true also needs CONFIG GET/SET (CONFIG SET can change",
                  "# where the server writes files: prefer zero_sync_delay = false)",
                  f"ACL SETUSER {user} +config|get +config|set"]
    return "\n".join(lines) + "\n"


def mongodb(url: str, options: Mapping[str, Any]) -> str:
    """MongoDB: the built-in ``backup`` role (run in mongosh)."""
    t = MongoTarget.parse(url)
    user, note = _user(t.user)
    lines = [
        "// least-privilege user for backing up mongodb (run in mongosh as an admin)",
        *([f"// {note}"] if note else []),
        f'db.getSiblingDB("admin").createUser({{user: {json.dumps(user)}, '
        'pwd: passwordPrompt(), roles: [{role: "backup", db: "admin"}]})',
        "// the url then needs authSource=admin",
    ]
    return "\n".join(lines) + "\n"


_BY_ENGINE = {"postgres": postgres, "mysql": mysql, "redis": redis, "mongodb": mongodb}


def grants(engine: str, url: str, options: Mapping[str, Any]) -> str:
    """The script that creates the least-privilege role for a job. Pure (no connection);
    raises ``ConfigError`` for an unknown engine or a url that does not parse. The result
    holds no password (a password inside ``url`` is ignored)."""
    try:
        make = _BY_ENGINE[engine]
    except KeyError:
        raise ConfigError(f"no grants known for engine {engine!r}") from None
    return make(url, options)
