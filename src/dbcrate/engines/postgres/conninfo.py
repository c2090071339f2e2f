"""libpq connection strings without libpq: parse and build them the way libpq does.

``import psycopg`` costs about 0.13 s and 25 MiB at the start of every backup only to read
a connection URL, so this module implements ``PQconninfoParse``'s rules (PostgreSQL's
``src/interfaces/libpq/fe-connect.c``: ``conninfo_parse``, ``conninfo_uri_parse_options``,
``conninfo_uri_parse_params``, ``conninfo_uri_decode``, ``conninfo_storeval``) in plain
Python, stdlib only. Both forms are read: ``postgresql://`` / ``postgres://`` URIs and
``key=value`` strings. ``parse`` returns what ``psycopg.conninfo.conninfo_to_dict`` returns
(``None`` values left out, keys in libpq's order) and ``make`` what
``psycopg.conninfo.make_conninfo("", **kwargs)`` returns; ``tests/unit/test_conninfo.py``
checks both differentially against libpq through psycopg.

Error messages never quote a value, and quote a parameter name only when it cannot be part
of a secret that the input failed to delimit (an unencoded ``/`` in a URI password, an
unquoted space in a ``password=`` value).
"""

from __future__ import annotations

#: libpq's keywords, in the order of its ``PQconninfoOptions`` (libpq 18)
_ORDER = (
    "service", "user", "password", "passfile", "channel_binding", "connect_timeout",
    "dbname", "host", "hostaddr", "port", "client_encoding", "options", "application_name",
    "fallback_application_name", "keepalives", "keepalives_idle", "keepalives_interval",
    "keepalives_count", "tcp_user_timeout", "sslmode", "sslnegotiation", "sslcompression",
    "sslcert", "sslkey", "sslcertmode", "sslpassword", "sslrootcert", "sslcrl", "sslcrldir",
    "sslsni", "requirepeer", "require_auth", "min_protocol_version", "max_protocol_version",
    "ssl_min_protocol_version", "ssl_max_protocol_version", "gssencmode", "krbsrvname",
    "gsslib", "gssdelegation", "replication", "target_session_attrs", "load_balance_hosts",
    "scram_client_key", "scram_server_key", "oauth_issuer", "oauth_client_id",
    "oauth_client_secret", "oauth_scope", "sslkeylogfile",
)  # fmt: skip
#: every keyword libpq accepts (``PQconndefaults``); ``requiressl`` is also read, as sslmode
KEYWORDS: frozenset[str] = frozenset(_ORDER)
_SECRETS = frozenset(
    {"password", "sslpassword", "oauth_client_secret", "scram_client_key", "scram_server_key"}
)
_PREFIXES = ("postgresql://", "postgres://")
_SPACE = " \t\n\v\f\r"  # C isspace()
_HEX = "0123456789abcdefABCDEF"
_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_")


class ConninfoError(ValueError):
    """A connection string libpq would reject. The message never holds a value."""


def parse(conninfo: str) -> dict[str, str]:
    """The options set in ``conninfo`` (a URI or a ``key=value`` string), keyword -> value,
    as libpq's ``PQconninfoParse`` reads them; nothing is filled in from defaults, the
    environment or a service file. Raises ``ConninfoError`` for anything libpq rejects (and
    for percent-encoded bytes that are not UTF-8, which psycopg cannot decode either)."""
    try:
        conninfo.encode()
    except UnicodeEncodeError:
        raise ConninfoError("the connection string is not valid unicode") from None
    conninfo = conninfo.partition("\0")[0]  # libpq reads a C string
    opts: dict[str, str] = {}
    if conninfo.startswith(_PREFIXES):
        _parse_uri(conninfo, opts)
    else:
        _parse_pairs(conninfo, opts)
    for value in opts.values():
        try:
            value.encode()
        except UnicodeEncodeError:  # surrogate-escaped bytes from _decode
            raise ConninfoError("a percent-encoded uri part is not valid utf-8") from None
    return {k: opts[k] for k in _ORDER if k in opts}


def make(**kwargs: str | int | None) -> str:
    """A ``key=value`` connection string of ``kwargs`` (``None`` values left out), values
    quoted and escaped as psycopg's ``make_conninfo`` does. Raises ``ConninfoError`` if the
    result is not valid (an unknown keyword, say)."""
    result = " ".join(f"{k}={_escape(str(v))}" for k, v in kwargs.items() if v is not None)
    parse(result)
    return result


def _escape(value: str) -> str:
    if not value:
        return "''"
    value = value.replace("\\", "\\\\").replace("'", "\\'")
    if any(c.isspace() for c in value):  # what psycopg's re "\s" matches
        return f"'{value}'"
    return value


def _name(name: str, guarded: bool) -> str:
    """`` "name"`` for a message, or nothing when the name might be part of a secret."""
    if guarded or len(name) > 64 or not _NAME_CHARS.issuperset(name):
        return ""
    return f' "{name}"'


def _store(opts: dict[str, str], key: str, value: str, guarded: bool, uri: bool) -> None:
    if key == "requiressl":  # libpq's backwards compatibility
        key, value = "sslmode", "require" if value.startswith("1") else "prefer"
    if key not in KEYWORDS:
        if uri:
            raise ConninfoError(f"invalid uri query parameter{_name(key, guarded)}")
        raise ConninfoError(f"invalid connection option{_name(key, guarded)}")
    opts[key] = value


def _parse_pairs(text: str, opts: dict[str, str]) -> None:
    """``key = value`` pairs: libpq's ``conninfo_parse``."""
    i, n = 0, len(text)
    guarded = False  # a secret was seen: a later name may be the rest of it
    while i < n:
        if text[i] in _SPACE:
            i += 1
            continue
        start = i
        while i < n and text[i] != "=" and text[i] not in _SPACE:
            i += 1
        key = text[start:i]
        while i < n and text[i] in _SPACE:
            i += 1
        if i == n or text[i] != "=":
            raise ConninfoError(f'missing "=" after{_name(key, guarded) or " a name"}')
        i += 1
        while i < n and text[i] in _SPACE:
            i += 1
        value: list[str] = []
        if i < n and text[i] == "'":
            i += 1
            while True:
                if i == n:
                    raise ConninfoError("unterminated quoted string in the connection string")
                c = text[i]
                i += 1
                if c == "'":
                    break
                if c == "\\":
                    if i == n:
                        continue  # the check above fails
                    c = text[i]
                    i += 1
                value.append(c)
        else:
            while i < n:
                c = text[i]
                i += 1
                if c in _SPACE:
                    break
                if c == "\\":
                    if i == n:
                        break
                    c = text[i]
                    i += 1
                value.append(c)
        _store(opts, key, "".join(value), guarded, uri=False)
        guarded = guarded or key in _SECRETS


def _decode(part: str) -> str:
    """Percent-decoded ``part`` (libpq's ``conninfo_uri_decode``: leading and trailing
    spaces dropped, others refused); bytes that are not UTF-8 come back surrogate-escaped,
    for ``parse`` to refuse if they survive."""
    part = part.strip(" ")
    if " " in part:
        raise ConninfoError("unexpected spaces in the uri (percent-encode them as %20)")
    if "%" not in part:
        return part
    pieces = part.split("%")
    out = bytearray(pieces[0].encode())
    for piece in pieces[1:]:
        if len(piece) < 2 or piece[0] not in _HEX or piece[1] not in _HEX:
            raise ConninfoError("invalid percent-encoded token in the uri")
        byte = int(piece[:2], 16)
        if not byte:
            raise ConninfoError("forbidden value %00 in a percent-encoded uri part")
        out.append(byte)
        out += piece[2:].encode()
    return out.decode("utf-8", "surrogateescape")


def _parse_uri(uri: str, opts: dict[str, str]) -> None:
    """``scheme://[user[:password]@][host][:port][,...][/dbname][?k=v&...]``: libpq's
    ``conninfo_uri_parse_options``, including how it splits malformed URIs."""
    rest = uri.split("://", 1)[1]
    at, slash = rest.find("@"), rest.find("/")
    if at >= 0 and (slash < 0 or at < slash):  # libpq looks for "@" before the first "/"
        user, colon, password = rest[:at].partition(":")
        rest = rest[at + 1 :]
        if user:
            opts["user"] = _decode(user)
        if colon and password:
            opts["password"] = _decode(password)
    # an "@" past the credentials: a password libpq did not delimit (an unencoded "/") may
    # be split into the names below, so messages do not quote them
    guarded = "@" in rest
    hosts: list[str] = []
    ports: list[str] = []
    i, n = 0, len(rest)
    while True:
        if i < n and rest[i] == "[":
            end = rest.find("]", i + 1)
            if end < 0:
                raise ConninfoError('missing "]" after an ipv6 host address in the uri')
            if end == i + 1:
                raise ConninfoError("empty ipv6 host address in the uri")
            hosts.append(rest[i + 1 : end])
            i = end + 1
            if i < n and rest[i] not in ":/?,":
                raise ConninfoError(
                    "unexpected character after an ipv6 host address in the uri "
                    '(expected ":" or "/")'
                )
        else:
            start = i
            while i < n and rest[i] not in ":/?,":
                i += 1
            hosts.append(rest[start:i])
        port = ""
        if i < n and rest[i] == ":":
            start = i = i + 1
            while i < n and rest[i] not in "/?,":
                i += 1
            port = rest[start:i]
        ports.append(port)
        if i == n or rest[i] != ",":
            break
        i += 1
    if host := ",".join(hosts):
        opts["host"] = _decode(host)
    if port := ",".join(ports):
        opts["port"] = _decode(port)
    if i < n and rest[i] == "/":
        query = rest.find("?", i + 1)
        end = n if query < 0 else query
        if dbname := rest[i + 1 : end]:
            opts["dbname"] = _decode(dbname)
        i = end
    if i < n:  # at "?"
        pieces = rest[i + 1 :].split("&")
        if not pieces[-1]:
            pieces.pop()  # libpq stops at the end after a trailing "&"
        for piece in pieces:
            if "=" not in piece:
                raise ConninfoError('missing "=" in a uri query parameter')
            key, _, value = piece.partition("=")
            if "=" in value:
                raise ConninfoError('extra "=" in a uri query parameter')
            key, value = _decode(key), _decode(value)
            if key == "ssl" and value == "true":  # libpq's JDBC compatibility
                key, value = "sslmode", "require"
            _store(opts, key, value, guarded, uri=True)
