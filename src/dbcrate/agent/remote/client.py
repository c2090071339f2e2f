"""The agent's outbound mTLS client for ``/agent/v1`` (httpx, HTTP/1.1): the agent's
certificate and key from its state dir, the server verified against the CA pinned at
enrollment only. Requests last at most 30 s (a long-poll asks for ≤ 25 s)."""

from __future__ import annotations

import ssl
from typing import Any

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from dbcrate.agent.remote.enroll import csr_for
from dbcrate.agent.remote.files import Enrollment, write_private
from dbcrate.errors import ControlPlaneError, ControlPlaneUnreachable
from dbcrate.wire import API

TIMEOUT = 30.0


class Revoked(ControlPlaneError):
    """The control plane answered 403: this agent is revoked (or unknown to it)."""


class Client:
    """One agent's connection to the control plane. Raises ``ControlPlaneError`` for
    a server that cannot be reached or answers an error, ``Revoked`` for 403."""

    def __init__(self, enrollment: Enrollment) -> None:
        self.enrollment = enrollment
        self._http: httpx.Client | None = None

    def _ssl(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.enrollment.ca_path))
        ctx.load_cert_chain(self.enrollment.cert_path, self.enrollment.key_path)
        return ctx

    def http(self) -> httpx.Client:
        if self._http is None:
            self._http = httpx.Client(base_url=self.enrollment.agent_url + API,
                                      verify=self._ssl(), timeout=TIMEOUT)
        return self._http

    def close(self) -> None:
        if self._http is not None:
            self._http.close()
            self._http = None

    def call(self, method: str, path: str, **kw: Any) -> Any:
        try:
            r = self.http().request(method, path, **kw)
        except httpx.HTTPError as exc:
            self.close()
            raise ControlPlaneUnreachable(f"control plane unreachable: "
                                          f"{type(exc).__name__}: {exc}") from None
        if r.status_code == 403:
            raise Revoked("the control plane refused this agent (revoked?)",
                          hint="enroll again with a new token")
        if r.status_code >= 400:
            raise ControlPlaneError(f"control plane: HTTP {r.status_code} for {path}: "
                                    f"{r.text[:300]}")
        return r.json()

    # -- renewal -----------------------------------------------------------------------

    def cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.enrollment.cert_path.read_bytes())

    def renew(self) -> x509.Certificate:
        """A new certificate for the pinned key (same key, a new CSR), saved atomically;
        the next request uses it."""
        key = serialization.load_pem_private_key(self.enrollment.key_path.read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        got = self.call("POST", "/renew", json={"csr": csr_for(key, self.enrollment.name)})
        pem = str(got["cert"]).encode()
        cert = x509.load_pem_x509_certificate(pem)
        write_private(self.enrollment.cert_path, pem, 0o644)
        self.close()
        return cert
