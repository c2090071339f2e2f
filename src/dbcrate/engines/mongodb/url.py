"""MongoDB URIs: the password and the TLS key password taken out, the rest for argv."""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote, unquote

from dbcrate.errors import ConfigError


@dataclass(frozen=True)
class MongoTarget:
    """A ``mongodb://`` or ``mongodb+srv://`` URI split into its password and the rest."""

    scheme: str
    user: str | None
    hosts: str
    rest: str  # "/db?options" (may be empty; never the key password below)
    password: str | None = field(default=None, repr=False)
    #: ``tlsCertificateKeyFilePassword`` from the url: to the tools by the --config file
    key_password: str | None = field(default=None, repr=False)

    @classmethod
    def parse(cls, url: str, password: str | None = None) -> MongoTarget:
        """Raises ``ConfigError`` (never quoting the password) for a malformed URI."""
        scheme, sep, tail = url.partition("://")
        if not sep or scheme not in ("mongodb", "mongodb+srv"):
            raise ConfigError("invalid mongodb url (expected mongodb://[user@]host[:port]/db)")
        # the userinfo ends at the last @ before the options (an unencoded / in a password
        # must not end up in the hosts, which argv and messages show)
        cut = tail.rfind("@", 0, tail.find("?") if "?" in tail else len(tail)) + 1
        netloc, slash, path = tail[cut:].partition("/")
        netloc = tail[:cut] + netloc
        netloc, q, query = netloc.partition("?")  # mongodb://host?opts without a slash
        rest = (slash + path) if slash else (("/?" + query) if q else "")
        userinfo, at, hosts = netloc.rpartition("@")
        user = url_password = None
        if at:
            u, colon, p = userinfo.partition(":")
            user = unquote(u) or None
            url_password = unquote(p) if colon else None
        if not hosts:
            raise ConfigError("invalid mongodb url: no host")
        rest, key_password = _pop_key_password(rest)
        return cls(scheme, user, hosts, rest, password if password is not None else url_password,
                   key_password)

    @property
    def database(self) -> str:
        return unquote(self.rest.lstrip("/").partition("?")[0])

    @property
    def where(self) -> str:
        return self.hosts

    def uri(self, *, with_password: bool = False) -> str:
        """The URI; the password only with ``with_password`` (for a child's env only)."""
        auth = ""
        if self.user:
            auth = quote(self.user, safe="")
            if with_password and self.password is not None:
                auth += ":" + quote(self.password, safe="")
            auth += "@"
        rest = self.rest
        if with_password and self.key_password is not None:
            rest += ("&" if "?" in rest else ("?" if rest else "/?"))
            rest += f"{_KEY_PASSWORD_PARAMS[0]}={quote(self.key_password, safe='')}"
        return f"{self.scheme}://{auth}{self.hosts}{rest}"

    def scrub(self, text: str) -> str:
        for secret in (self.password, self.key_password):
            if secret:
                text = text.replace(secret, "***").replace(quote(secret, safe=""), "***")
        return text


#: url parameters holding the client key's password (any case; the first is the current name)
_KEY_PASSWORD_PARAMS = ("tlsCertificateKeyFilePassword", "sslPEMKeyPassword",
                        "sslClientCertificateKeyPassword")


def _pop_key_password(rest: str) -> tuple[str, str | None]:
    """``rest`` ("/db?options") without a key-password parameter, and its value."""
    path, q, query = rest.partition("?")
    if not q:
        return rest, None
    names = {n.lower() for n in _KEY_PASSWORD_PARAMS}
    kept, found = [], None
    for item in query.split("&"):
        key, _, value = item.partition("=")
        if key.lower() in names:
            found = unquote(value)
        elif item:
            kept.append(item)
    return (path + "?" + "&".join(kept) if kept else path), found
