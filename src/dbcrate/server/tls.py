"""uvicorn does not pass the TLS client certificate to the app; this HTTP/1.1 protocol
does, as ``scope["extensions"]["tls"]`` (the ASGI TLS extension's ``client_cert_chain``:
the peer's certificate as PEM, the only one the handshake gives us)."""

from __future__ import annotations

import asyncio
import ssl
from typing import Any

from uvicorn.protocols.http.h11_impl import H11Protocol


def _with_tls(app: Any, info: dict[str, Any]) -> Any:
    async def wrapped(scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            scope = dict(scope)
            scope["extensions"] = {**scope.get("extensions", {}), "tls": info}
        await app(scope, receive, send)

    return wrapped


class ClientCertProtocol(H11Protocol):
    """H11Protocol whose app sees the connection's client certificate."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        obj = transport.get_extra_info("ssl_object")
        der = obj.getpeercert(binary_form=True) if isinstance(obj, ssl.SSLObject) else None
        info: dict[str, Any] = {
            "client_cert_chain": [ssl.DER_cert_to_PEM_cert(der)] if der else [],
            "tls_version": obj.version() if isinstance(obj, ssl.SSLObject) else None,
        }
        self.app = _with_tls(self.app, info)
