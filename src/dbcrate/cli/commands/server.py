"""``dbcrate server init|run|create-user|enroll-token|audit verify``: the optional control
plane (docs/control-plane.md). Needs the ``server`` extra (``pip install 'dbcrate[server]'``)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dbcrate.errors import ToolNotFound, UsageError


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add the ``server`` command group to the subparsers ``sub``."""
    data = argparse.ArgumentParser(add_help=False)
    data.add_argument("--data-dir", metavar="D", help="server.toml, server.db and the CA "
                      "key live here (default: $DBCRATE_SERVER_DIR, else a platform dir)")
    p = sub.add_parser("server", parents=[common], help="the control plane (optional extra)")
    ssub = p.add_subparsers(dest="server_command", metavar="SUBCOMMAND", parser_class=type(p))
    ssub.required = True
    i = ssub.add_parser("init", parents=[common, data], help="initialise a data dir")
    i.add_argument("--org", metavar="NAME", default="default", help="the first org")
    i.add_argument("--listen", metavar="H:P", help="dashboard, API, enrollment "
                   "(default 127.0.0.1:8420)")
    i.add_argument("--agent-listen", metavar="H:P", help="the agents' mTLS listener "
                   "(default 127.0.0.1:8421)")
    i.add_argument("--agent-url", metavar="URL", help="how agents reach --agent-listen")
    i.add_argument("--database", metavar="URL", help="sqlite:///PATH or postgresql://... "
                   "(default: server.db in the data dir)")
    i.set_defaults(handler=init)
    r = ssub.add_parser("run", parents=[common, data],
                        help="run the server (an empty data dir is initialised first)")
    r.set_defaults(handler=run)
    u = ssub.add_parser("create-user", parents=[common, data], help="add a user to an org")
    u.add_argument("email")
    u.add_argument("--role", required=True, choices=("viewer", "operator", "admin"))
    u.add_argument("--org", metavar="NAME", help="default: the server's org")
    u.add_argument("--password-file", metavar="F", help="else the password is read from stdin")
    u.set_defaults(handler=create_user)
    t = ssub.add_parser("enroll-token", parents=[common, data],
                        help="a one-use token for `dbcrate agent enroll`")
    t.add_argument("--org", metavar="NAME", help="default: the server's org")
    t.add_argument("--name", metavar="AGENT", help="the agent's name (else it chooses)")
    t.add_argument("--ttl", default="1h", help="how long the token is valid (default 1h)")
    t.add_argument("--json", action="store_true", help="{token, expires_at, command}")
    t.set_defaults(handler=enroll_token)
    a = ssub.add_parser("audit", parents=[common], help="the per-org audit log")
    asub = a.add_subparsers(dest="server_audit", metavar="SUBCOMMAND", parser_class=type(p))
    asub.required = True
    v = asub.add_parser("verify", parents=[common, data], help="check the hash chain (exit 5)")
    v.add_argument("--org", metavar="NAME", help="default: the server's org")
    v.set_defaults(handler=audit_verify)


def _need_extra() -> None:
    try:
        import fastapi  # noqa: F401
        import sqlalchemy  # noqa: F401
    except ImportError:
        raise ToolNotFound("the control plane needs the server extra",
                           hint="pip install 'dbcrate[server]'") from None


def _dir(args: argparse.Namespace) -> Path:
    from dbcrate.server.settings import data_dir

    return data_dir(args.data_dir)


def init(args: argparse.Namespace) -> int:
    _need_extra()
    from dbcrate.server import admin

    values = {"org": args.org}
    for key in ("listen", "agent_listen", "agent_url", "database"):
        if getattr(args, key):
            values[key] = getattr(args, key)
    st = admin.init(_dir(args), values)
    sys.stdout.write(f"initialised {st.dir} (org {st.org})\n")
    _first_admin_link(st)
    return 0


def _first_admin_link(st: Any) -> None:
    from dbcrate.server import admin
    from dbcrate.server.db import open_engine, sessions

    eng = open_engine(st.database_url)
    with sessions(eng)() as db:
        if not admin.has_admin(db):
            token, _ = admin.one_time(db, "admin", st.org, admin.ADMIN_LINK_TTL)
            sys.stdout.write(f"first admin (one use, 24h): {admin.public_url(st)}/setup#"
                             f"{token}\n")
            sys.stdout.flush()
    eng.dispose()


def run(args: argparse.Namespace) -> int:
    _need_extra()
    from dbcrate.server import admin, settings
    from dbcrate.server.run import serve

    d = _dir(args)
    if not admin.initialised(d):
        admin.init(d, {"org": "default"})
        sys.stdout.write(f"initialised {d}\n")
    st = settings.load(d)
    _first_admin_link(st)
    return serve(st)


def _session(args: argparse.Namespace) -> Any:
    from dbcrate.server import settings
    from dbcrate.server.db import migrate, open_engine, sessions

    st = settings.load(_dir(args))
    eng = open_engine(st.database_url)
    migrate(eng)
    return st, sessions(eng)()


def _password(args: argparse.Namespace) -> str:
    from dbcrate.config import read_secret_file

    if args.password_file:
        text = read_secret_file(args.password_file, file="--password-file", key="--password-file")
    elif sys.stdin.isatty():
        import getpass

        text = getpass.getpass("password: ")
    else:
        text = sys.stdin.readline()
    password = text.rstrip("\r\n")
    if not password:
        raise UsageError("no password given", hint="pass --password-file F or pipe it on stdin")
    return password


def create_user(args: argparse.Namespace) -> int:
    _need_extra()
    from dbcrate.server import admin
    from dbcrate.server import audit as server_audit

    password = _password(args)
    st, db = _session(args)
    with db:
        org = args.org or st.org
        admin.create_user(db, org, args.email, args.role, password)
        server_audit.append(db, admin.org_id(db, org), "user.create", "cli",
                            detail={"email": args.email.lower(), "role": args.role})
    sys.stdout.write(f"user {args.email.lower()}: {args.role} in {args.org or st.org}\n")
    return 0


def enroll_token(args: argparse.Namespace) -> int:
    _need_extra()
    from dbcrate.server import admin
    from dbcrate.server import audit as server_audit

    ttl = admin.check_ttl(args.ttl)
    st, db = _session(args)
    with db:
        org = args.org or st.org
        tok = admin.enroll_token(db, st, org, args.name, ttl)
        server_audit.append(db, admin.org_id(db, org), "token.create", "cli", agent=args.name)
    sys.stdout.write((tok.json() if args.json else tok.token) + "\n")
    return 0


def audit_verify(args: argparse.Namespace) -> int:
    _need_extra()
    from dbcrate.server import admin
    from dbcrate.server import audit as server_audit

    st, db = _session(args)
    with db:
        org = args.org or st.org
        result = server_audit.verify(db, admin.org_id(db, org))
    sys.stdout.write(f"org {org}: {result.records} records, chain intact\n")
    return 0
