"""What may be shown of a URL or a config object: no password, no secret parameter.

Every message, log line and ``--json`` field that shows a database URL shows
``redact_url(url)``: the userinfo password and the values of secret query parameters
(``password``, ``sslpassword``, ``oauth_client_secret``, MongoDB's
``tlsCertificateKeyFilePassword``, anything named like a password, secret or token) become
``***``. libpq ``key=value`` strings are handled too.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import fields
from typing import Any

MASK = "***"
#: query parameters (lowercased) whose value is a secret
SECRET_PARAMS = frozenset({
    "password", "pass", "pwd", "sslpassword", "oauth_client_secret",
    "tlscertificatekeyfilepassword", "sslkeypassword", "secret", "token", "auth",
})
_SECRETISH = ("password", "secret", "token")
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_QUERY_PARAM = re.compile(r"([?&;])([^=&;#]+)=([^&;#]*)")
_CONNINFO_PARAM = re.compile(r"""(\b[A-Za-z_]+\s*=\s*)('(?:[^'\\]|\\.)*'|[^\s']*)""")


def is_secret_param(name: str) -> bool:
    """Whether a URL/conninfo parameter called ``name`` holds a secret."""
    low = name.strip().lower()
    return low in SECRET_PARAMS or any(s in low for s in _SECRETISH)


def redact_url(url: str) -> str:
    """``url`` with the userinfo password and secret parameter values replaced by ``***``.
    Pure; raises nothing (text that is not a URL comes back with ``password=...``-style
    values masked)."""
    m = _SCHEME.match(url)
    if not m:
        return _CONNINFO_PARAM.sub(_mask_conninfo, url)
    head, rest = url[: m.end()], url[m.end():]
    # the userinfo ends at the last @ before the query (an unencoded / in a password
    # must not leave its tail visible); the authority at the next / ? #
    at = rest.rfind("@", 0, _first(rest, "?#", len(rest)))
    netloc_end = _first(rest, "/?#", len(rest), start=max(at, 0))
    netloc, tail = rest[:netloc_end], rest[netloc_end:]
    if at >= 0 and at < netloc_end:
        userinfo, host = netloc[:at], netloc[at + 1:]
        user, colon, _password = userinfo.partition(":")
        netloc = f"{user}:{MASK}@{host}" if colon else f"{user}@{host}"
    return head + netloc + _QUERY_PARAM.sub(_mask_query, tail)


def _first(text: str, chars: str, default: int, *, start: int = 0) -> int:
    found = [i for i in (text.find(c, start) for c in chars) if i >= 0]
    return min(found) if found else default


def _mask_query(m: re.Match[str]) -> str:
    if is_secret_param(m.group(2)):
        return f"{m.group(1)}{m.group(2)}={MASK}"
    return m.group(0)


def _mask_conninfo(m: re.Match[str]) -> str:
    name = m.group(1).split("=", 1)[0]
    if is_secret_param(name):
        return f"{m.group(1)}{MASK}"
    return m.group(0)


def shown_repr(obj: Any, **shown: Any) -> str:
    """A dataclass repr of ``obj`` over its ``repr=True`` fields, with ``shown`` values in
    place of theirs and secret-named keys of mapping fields masked. Raises nothing."""
    parts = []
    for f in fields(obj):
        if not f.repr:
            continue
        value = shown.get(f.name, getattr(obj, f.name))
        if isinstance(value, Mapping):
            value = {k: MASK if isinstance(k, str) and is_secret_param(k) else v
                     for k, v in value.items()}
        parts.append(f"{f.name}={value!r}")
    return f"{type(obj).__name__}({', '.join(parts)})"
