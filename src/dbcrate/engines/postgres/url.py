"""A PostgreSQL connection target: URL parsing (libpq's rules, without psycopg:
``conninfo``), libpq environment, psycopg arguments.

Accepts ``postgresql://user@host:port/dbname?sslmode=...`` and ``postgres://...`` (and a
libpq ``key=value`` string). The database name is required (libpq's default, the user
name, is never assumed) unless a ``service`` names it. Query parameters with a libpq
environment variable reach the tools through that variable; the password only ever
through ``PGPASSWORD`` in the child's environment, never argv, and never in a message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from dbcrate.engines.postgres.conninfo import ConninfoError
from dbcrate.engines.postgres.conninfo import make as make_conninfo
from dbcrate.engines.postgres.conninfo import parse as conninfo_to_dict
from dbcrate.engines.process import PrivateFile
from dbcrate.errors import ConfigError

#: libpq connection parameter -> environment variable
LIBPQ_ENV: dict[str, str] = {
    "host": "PGHOST",
    "hostaddr": "PGHOSTADDR",
    "port": "PGPORT",
    "user": "PGUSER",
    "passfile": "PGPASSFILE",
    "channel_binding": "PGCHANNELBINDING",
    "service": "PGSERVICE",
    "options": "PGOPTIONS",
    "application_name": "PGAPPNAME",
    "sslmode": "PGSSLMODE",
    "requiressl": "PGREQUIRESSL",
    "sslnegotiation": "PGSSLNEGOTIATION",
    "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT",
    "sslkey": "PGSSLKEY",
    "sslrootcert": "PGSSLROOTCERT",
    "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR",
    "sslsni": "PGSSLSNI",
    "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
    "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE",
    "krbsrvname": "PGKRBSRVNAME",
    "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION",
    "connect_timeout": "PGCONNECT_TIMEOUT",
    "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS",
    "load_balance_hosts": "PGLOADBALANCEHOSTS",
    "require_auth": "PGREQUIREAUTH",
}
DEFAULT_CONNECT_TIMEOUT = "10"
#: secret connection parameters libpq has no environment variable for: the tools get them
#: from a private service file (``PGSERVICEFILE``), never argv
SECRET_PARAMS = ("sslpassword", "oauth_client_secret")
_SERVICE = "dbcrate"


@dataclass(frozen=True)
class PgTarget:
    """Where one database lives. ``params`` are libpq keywords without the password."""

    params: Mapping[str, str]
    password: str | None = field(default=None, repr=False)
    #: ``SECRET_PARAMS`` found in the url (in memory, in a private file for the tools)
    secrets: Mapping[str, str] = field(default_factory=dict, repr=False)

    @classmethod
    def parse(cls, url: str, password: str | None = None) -> PgTarget:
        """Parse ``url``; a password inside it is used when ``password`` is None and is
        removed from the params. Raises ``ConfigError`` for an unparsable URL or one that
        names no database (and no ``service``)."""
        try:
            params = {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}
        except ConninfoError as e:
            raise ConfigError("invalid postgresql url (expected postgresql://user@host/db)") from e
        if not params.get("dbname") and "service" not in params:
            raise ConfigError(
                "the postgresql url names no database",
                hint="add it: postgresql://user@host:5432/DBNAME (libpq would silently use "
                "the user name; dbcrate does not guess)",
            )
        url_password = params.pop("password", None)
        # an unencoded / in a password ends the host early: "u:Pa/ss@h/db" reads as host
        # u, port Pa, dbname ss@h/db; refuse it before any message can show those parts
        ports = params.get("port", "").split(",")
        if not all(p.isdigit() or not p for p in ports) or (
                "@" in params.get("dbname", "") and "/" in params.get("dbname", "")):
            raise ConfigError("invalid postgresql url (the port is not a number, or the "
                              "user/password part is not percent-encoded)",
                              hint="percent-encode / ? # @ : in a password")
        secrets = {k: params.pop(k) for k in SECRET_PARAMS if k in params}
        if secrets and "service" in params:
            raise ConfigError(
                f"{', '.join(secrets)} cannot be combined with service in the url",
                hint="dbcrate passes them to the tools through its own service file; put "
                "them in your pg_service.conf instead",
            )
        if any("\n" in v or "\r" in v for v in secrets.values()):
            raise ConfigError(f"{', '.join(secrets)} in the url must be one line")
        params.setdefault("connect_timeout", DEFAULT_CONNECT_TIMEOUT)
        return cls(params, password if password is not None else url_password, secrets)

    @property
    def dbname(self) -> str:
        return self.params.get("dbname") or self.params.get("user") or os.environ.get("USER", "")

    @property
    def where(self) -> str:
        """``host:port`` for messages (``local socket:port`` without a host)."""
        host = self.params.get("host") or self.params.get("hostaddr") or "local socket"
        return f"{host}:{self.params.get('port') or '5432'}"

    def with_dbname(self, dbname: str) -> PgTarget:
        return replace(self, params={**self.params, "dbname": dbname})

    def libpq_conninfo(self) -> str:
        """A conninfo string for ``psycopg.connect`` (the password included: in memory only)."""
        kwargs = dict(self.params)
        kwargs["dbname"] = self.dbname
        if self.password is not None:
            kwargs["password"] = self.password
        kwargs.update(self.secrets)
        return make_conninfo(**kwargs)

    def tool_env(self) -> dict[str, str | PrivateFile]:
        """The tool's own variables for pg_dump/pg_restore/psql: every param that has a libpq
        variable, ``PGAPPNAME`` and ``PGPASSWORD``; with ``secrets``, ``PGSERVICEFILE`` (a
        private file holding them) and ``PGSERVICE``. Nothing inherited: the spawner adds
        the allowlisted rest (``process.child_env``), which holds no ``PG*`` variable."""
        env: dict[str, str | PrivateFile] = {}
        if self.secrets:
            lines = [f"[{_SERVICE}]", *(f"{k}={v}" for k, v in self.secrets.items())]
            env["PGSERVICEFILE"] = PrivateFile("\n".join(lines) + "\n")
            env["PGSERVICE"] = _SERVICE
        for key, value in self.params.items():
            if key in LIBPQ_ENV:
                env[LIBPQ_ENV[key]] = value
        env.setdefault("PGAPPNAME", "dbcrate")
        if self.password is not None:
            env["PGPASSWORD"] = self.password
        return env

    def tool_conninfo(self) -> str:
        """The ``-d`` argument: the database name and any param without a libpq variable.
        Never holds the password."""
        rest = {k: v for k, v in self.params.items() if k not in LIBPQ_ENV and k != "dbname"}
        return make_conninfo(dbname=self.dbname, **rest)

    def scrub(self, text: str) -> str:
        """``text`` with the password and secrets masked (defence in depth for messages)."""
        for secret in (self.password, *self.secrets.values()):
            if secret:
                text = text.replace(secret, "***")
        return text
