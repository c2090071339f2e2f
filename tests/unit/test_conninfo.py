"""engines/postgres/conninfo.py against libpq itself (through psycopg): every input parses
to the same options libpq reports, or both refuse it; ``make`` builds what psycopg's
``make_conninfo`` builds; error messages never show the password."""

from __future__ import annotations

import random
import subprocess
import sys

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from dbcrate.engines.postgres.conninfo import KEYWORDS, ConninfoError, make, parse

SECRET = "S3cr3tPw"


def libpq(conninfo: str) -> dict[str, str] | None:
    """libpq's reading of ``conninfo``, or None when psycopg refuses it (a ProgrammingError
    from libpq, or a Unicode error for a value that is not UTF-8)."""
    try:
        parsed = conninfo_to_dict(conninfo)
    except (psycopg.ProgrammingError, UnicodeError):
        return None
    return {k: str(v) for k, v in parsed.items() if v is not None}


CASES = [
    # ordinary URIs
    "postgresql://app@db.example.com:5432/shop",
    "postgres://app@db/shop",
    f"postgresql://app:{SECRET}@db:5432/shop?sslmode=require",
    "postgresql://db/shop",
    "postgresql://app@db",
    "postgresql://127.0.0.1:6543/x",
    "postgresql://%2Fvar%2Frun%2Fpostgresql/shop",
    "postgresql:///shop?host=/var/run/postgresql",
    # empty parts
    "postgresql://",
    "postgres://",
    "postgresql:///db",
    "postgresql://h/",
    "postgresql://h?",
    "postgresql://h/?",
    "postgresql://@h/db",
    "postgresql://:@h/db",
    f"postgresql://:{SECRET}@h/db",
    "postgresql://u:@h/db",
    "postgresql://h:/db",
    "postgresql://:5432/db",
    "postgresql://?dbname=x",
    # percent-encoded passwords and other parts
    "postgresql://u:S3cr3t%2FPw%3F%23%40%3A@h/db",
    "postgresql://u:S3cr3t%2fpw%25@h/db",
    "postgresql://%75ser:pa%20ss@h/d%62?application_name=my%20app",
    "postgresql://u:%C3%A9t%C3%A9@h/caf%C3%A9",
    "postgresql://us%40er@h/db",
    "postgresql://u:p%3Aw@h/db",
    "postgresql://u:pé€😀@h/db",
    # malformed, as libpq splits them
    "postgresql://u:Pa/ss@h/db",
    f"postgresql://u:{SECRET}/x@h/db",
    "postgresql://u:p@ss@h/db",
    f"postgresql://u:p@{SECRET}/w@h/db",
    "postgresql://h?user=a@b",
    "postgresql://h/db#frag",
    "postgresql://h/db/more",
    "postgresql://u:pa?ss@h/db",
    # raw spaces: libpq 17+ drops them around a part and refuses them inside
    "postgres:// foo",
    "postgresql://h/ d ",
    "postgresql://[ ::1 ]/x",
    "postgresql:// u :p @h/d",
    "postgresql://host?  user = uri-user & port  = 12345 ",
    "postgresql://h/a\tb",
    "postgresql://h/%20a%20",
    "postgresql://h/a b",
    "postgresql:// h1 , h2 /x",
    "postgresql://host?  user  =  uri-user  & port = 12345 12 ",
    f"postgresql://u:{SECRET} x@h/db",
    " postgresql://h/d",
    # IPv6 and host lists
    "postgresql://[::1]/db",
    "postgresql://[::1]:5433/db",
    "postgresql://u@[2001:db8::1]:5432/db?sslmode=verify-full",
    "postgresql://[::1/x]:5/db",
    "postgresql://[fe80::1%25eth0]/db",
    "postgresql://h1:5432,h2:5433/db?target_session_attrs=read-write",
    "postgresql://h1,h2/db",
    "postgresql://h1,h2:5/db",
    "postgresql://h:5,[::1]:6,h3/db",
    "postgresql://h1,,h3/db",
    "postgresql://,/db",
    "postgresql://h1:1,[::2]?load_balance_hosts=random",
    # query parameters
    "postgresql://h/db?sslmode=require&connect_timeout=10",
    "postgresql://h/db?options=-c%20statement_timeout%3D5000",
    "postgresql://h/db?options=-c+x",
    "postgresql://h/db?application_name=dbcrate&sslrootcert=%2Fetc%2Fca.pem",
    "postgresql://h/db?ssl=true",
    "postgresql://h/db?ssl=true&sslmode=disable",
    "postgresql://h/db?sslmode=disable&ssl=true",
    "postgresql://h/db?ssl=false",
    "postgresql://h/db?requiressl=1",
    "postgresql://h/db?requiressl=0",
    "postgresql://h/db?%73slmode=require",
    "postgresql://h/db?host=other&port=&dbname=x",
    "postgresql://h/db?sslmode=",
    "postgresql://h/db?a=1&",
    "postgresql://h/db?dbname=postgresql://x/y",
    "postgresql://h/db?application_name=a@b/c?d",
    f"postgresql://h/db?sslpassword={SECRET}&oauth_client_secret=x%20y",
    "postgresql://h/db?service=prod",
    "postgresql://h/db?replication=database&keepalives=1",
    # key=value strings
    "",
    "   ",
    "host=h dbname=db user=u",
    "host = h   dbname =db user= u",
    f"host=h password={SECRET} dbname=x",
    "host=h password='a b\\'c\\\\d' dbname=x",
    "dbname='' host=h",
    "host=",
    "host= port=5",
    "host=a\\ b port=5",
    "host=a\\",
    "host=a'b",
    "application_name='x'host=h",
    "options='-c search_path=a,b' sslmode=prefer",
    "host=h\tport=5\ndbname=x\r\fuser=u\vsslmode=require",
    "dbname=x dbname=y",
    "requiressl=1",
    "requiressl=1 sslmode=disable",
    "requiressl=x",
    "host=a\xa0b",
    "host=a\x85b",
    "host=a\x1cb",
    "dbname=é€😀",
    "host=a\x00b",
    "host='a\x00b'",
    "postgresql://h/d\x00b",
    "postgresql://h/db?ssl=true\x00&sslmode=bad",
    # refused
    "postgresql://h/db?foo=1",
    "postgresql://h/db?ssl=1",
    "postgresql://h/db?sslmode",
    "postgresql://h/db?&",
    "postgresql://h/db?&sslmode=require",
    "postgresql://h/db?a=1&&b=2",
    "postgresql://h/db?sslmode=require=x",
    "postgresql://h/db?application_name=%zz",
    "postgresql://h/%zz",
    "postgresql://h/%4",
    "postgresql://h/db%",
    "postgresql://h/db%00",
    "postgresql://%00@h/db",
    f"postgresql://u:{SECRET}%zz@h/db",
    f"postgresql://u:{SECRET}%00@h/db",
    f"postgresql://u:{SECRET}%@h/db",
    "postgresql://h%2/db",
    "postgresql://h:%/db",
    "postgresql://[::1",
    "postgresql://[::1/db",
    "postgresql://[]/db",
    "postgresql://[::1]x/db",
    "postgresql://[::1]@/db",
    f"postgresql://u:{SECRET}/x?{SECRET}=1@h/db",
    f"postgresql://u:pa/x?y@{SECRET}",
    f"postgresql://u:pa/x?a=1&{SECRET}@h",
    "postgresql://h/%ff",
    "postgresql://u:%C3@h/db",
    "postgresql://h/%ED%A0%80",
    "postgresql://h/db?%ff=1",
    "host",
    "host h",
    "=x",
    "host=h foo=bar",
    "host=h port",
    "host='h",
    "host='h\\'",
    "host='h\\",
    f"password='{SECRET}",
    f"password={SECRET} {SECRET}",
    f"password={SECRET} x{SECRET}=1",
    "Host=h",
    "postgresql:/h/db",
    "postgresql:h/db",
    "postgresql//h/db",
    "POSTGRESQL://h/db",
    "postgresql",
    "host=\ud800",
    # accepted after all: the bytes that are not UTF-8 are overridden
    "postgresql://h/%ff?dbname=x",
]


@pytest.mark.parametrize("conninfo", CASES)
def test_parse_matches_libpq(conninfo: str) -> None:
    expected = libpq(conninfo)
    if expected is None:
        with pytest.raises(ConninfoError) as caught:
            parse(conninfo)
        message = str(caught.value)
        assert message == message.lower() and message
        assert SECRET.lower() not in message.lower()
    else:
        assert list(parse(conninfo).items()) == list(expected.items())  # libpq's order too


def test_cases_cover_both_outcomes() -> None:
    outcomes = [libpq(c) is None for c in CASES]
    assert len(CASES) >= 60 and sum(outcomes) >= 30 and outcomes.count(False) >= 60


def test_keywords_are_libpqs() -> None:
    assert {k.keyword.decode() for k in psycopg.pq.Conninfo.get_defaults()} == KEYWORDS


def refusal(conninfo: str) -> str:
    with pytest.raises(ConninfoError) as caught:
        parse(conninfo)
    return str(caught.value)


def test_messages_name_what_is_wrong() -> None:
    assert refusal("postgresql://h/db?foo=1") == 'invalid uri query parameter "foo"'
    assert refusal("host=h foo=1") == 'invalid connection option "foo"'
    assert refusal("host") == 'missing "=" after "host"'
    assert refusal("host='h") == "unterminated quoted string in the connection string"
    assert refusal("postgresql://h/%zz") == "invalid percent-encoded token in the uri"
    # maybe the rest of a password that was not delimited: not named
    assert refusal(f"password=a {SECRET.lower()}=1") == "invalid connection option"
    assert refusal(f"postgresql://u:pa/x?{SECRET.lower()}=1@h/db") == (
        "invalid uri query parameter"
    )
    assert isinstance(ConninfoError("x"), ValueError)


MAKE_CASES: list[dict[str, str | int | None]] = [
    {},
    {"host": None},
    {"host": "h", "port": 5432, "dbname": "db"},
    {"dbname": ""},
    {"password": "it's"},
    {"password": "back\\slash"},
    {"password": "a b", "user": "u"},
    {"options": "-c search_path=a,b", "application_name": "dbcrate"},
    {"password": "'\\' \\'"},
    {"host": "/var/run/postgresql", "sslmode": None, "connect_timeout": "10"},
    {"application_name": "tab\there", "dbname": "new\nline"},
    {"dbname": "é€😀", "user": "\xa0", "host": "x\u3000y"},
    {"dbname": "=", "service": "prod", "sslrootcert": "/ca pem"},
    {"requiressl": "1"},
]


@pytest.mark.parametrize("kwargs", MAKE_CASES)
def test_make_matches_psycopg(kwargs: dict[str, str | int | None]) -> None:
    built = make(**kwargs)
    assert built == make_conninfo("", **kwargs)
    assert parse(built) == libpq(built)


def test_make_like_url_py_calls_it() -> None:
    rest = {"sslcert": "/c.pem", "keepalives": "1"}
    assert make(dbname="db", **rest) == make_conninfo(dbname="db", **rest)


def test_make_refuses_an_unknown_keyword() -> None:
    with pytest.raises(psycopg.ProgrammingError):
        make_conninfo("", nosuch="x")
    with pytest.raises(ConninfoError) as caught:
        make(nosuch="x")
    assert str(caught.value) == 'invalid connection option "nosuch"'


_CHARS = "ab Z09 '\\=\t\n\r\v\f\xa0\x1c\x85\u2003\u3000é€😀%@/?&:,[]#+-_."


def test_random_round_trip() -> None:
    rng = random.Random(20240611)
    keywords = sorted(KEYWORDS)
    for _ in range(400):
        values = {
            k: "".join(rng.choice(_CHARS) for _ in range(rng.randrange(0, 12)))
            for k in rng.sample(keywords, rng.randrange(1, 6))
        }
        built = make(**values)
        assert built == make_conninfo("", **values)
        assert parse(built) == values
        assert libpq(built) == values


_FRAGMENTS = [
    "postgresql://", "postgres://", "u", "h", ":", "@", "/", "?", "&", "=", ",", "[", "]",
    "::1", "%", "%41", "%2F", "%00", "%zz", "%ff", "%C3%A9", "5432", "db", " ", "'", "\\",
    "host", "port", "dbname", "user", "password", "sslmode", "require", "ssl", "true",
    "requiressl", "1", "foo", "é", "\t", "x",
]  # fmt: skip


def test_random_inputs_match_libpq() -> None:
    rng = random.Random(5432)
    for _ in range(3000):
        start = rng.choice(["postgresql://", "postgres://", ""])
        text = start + "".join(rng.choice(_FRAGMENTS) for _ in range(rng.randrange(0, 10)))
        expected = libpq(text)
        if expected is None:
            with pytest.raises(ConninfoError):
                parse(text)
        else:
            assert list(parse(text).items()) == list(expected.items()), text


def test_import_loads_no_psycopg() -> None:
    code = (
        "import sys, dbcrate.engines.postgres.conninfo\n"
        "assert not [m for m in sys.modules if m.startswith('psycopg')], 'psycopg imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
