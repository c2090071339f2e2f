"""``dbcrate agent enroll --server URL --token T``: make an ECDSA P-256 key, a CSR and
an age identity here, send the CSR and the identity's recipient with the one-time token,
and save everything only after the CA the server returned matches the SHA-256 the token
carries (a mismatch writes nothing)."""

from __future__ import annotations

import hashlib
import socket
from pathlib import Path

import httpx
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from dbcrate.agent.remote import files
from dbcrate.errors import ControlPlaneUnreachable, EnrollmentRefused
from dbcrate.operations.keys import new_identity

TIMEOUT = 30.0


def parse_token(token: str) -> str:
    """The CA SHA-256 the token carries. Raises ``EnrollmentRefused`` for a malformed
    token."""
    parts = token.strip().split(".")
    if len(parts) != 3 or parts[0] != "dbc1" or len(parts[2]) != 64:
        raise EnrollmentRefused("the token is not a dbcrate enrollment token",
                                hint="copy it exactly as `dbcrate server enroll-token` "
                                "printed it")
    return parts[2].lower()


def csr_for(key: ec.EllipticCurvePrivateKey, name: str) -> str:
    return (x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
            .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM).decode())


def _ca_sha256(pem: str) -> str:
    try:
        cert = x509.load_pem_x509_certificate(pem.encode())
    except ValueError:
        raise EnrollmentRefused("the server returned no valid CA certificate") from None
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


def enroll(server: str, token: str, name: str | None, state_dir: Path) -> files.Enrollment:
    """Enroll with ``server``. Raises ``EnrollmentRefused`` (token refused, CA
    mismatch: nothing written), ``ControlPlaneUnreachable`` or
    ``UsageError`` (already enrolled)."""
    from dbcrate.errors import UsageError

    if files.enrolled(state_dir):
        raise UsageError(f"{state_dir} is already enrolled",
                         hint="use another --state-dir, or remove its remote/ dir first")
    expected_ca = parse_token(token)
    agent_name = name or socket.gethostname().split(".")[0]
    key = ec.generate_private_key(ec.SECP256R1())
    identity_text, recipient = new_identity()
    body = {"token": token.strip(), "csr": csr_for(key, agent_name), "name": agent_name,
            "recipient": recipient}
    url = server.rstrip("/") + "/api/v1/enroll"
    try:
        r = httpx.post(url, json=body, timeout=TIMEOUT)
    except httpx.HTTPError as exc:
        raise ControlPlaneUnreachable(f"cannot reach the control plane at {server}: "
                                      f"{exc}") from None
    if r.status_code in (401, 403, 404, 422):
        detail = _detail(r)
        raise EnrollmentRefused(f"enrollment refused: {detail}")
    if r.status_code != 200:
        raise ControlPlaneUnreachable(f"enrollment failed: HTTP {r.status_code}: "
                                      f"{_detail(r)}")
    got = r.json()
    ca_pem, cert_pem = str(got.get("ca", "")), str(got.get("cert", ""))
    if _ca_sha256(ca_pem) != expected_ca:
        raise EnrollmentRefused("the server's CA does not match the token's CA SHA-256 "
                                "(nothing was saved)",
                                hint="the --server URL may not be your control plane")
    cert = x509.load_pem_x509_certificate(cert_pem.encode())
    mine = key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo)
    theirs = cert.public_key().public_bytes(serialization.Encoding.DER,
                                            serialization.PublicFormat.SubjectPublicKeyInfo)
    if mine != theirs:
        raise EnrollmentRefused("the certificate returned is not for this agent's key")
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    info = {"server": server.rstrip("/"), "agent_url": str(got["agent_url"]),
            "name": str(got.get("name") or agent_name), "ca_sha256": expected_ca}
    return files.save(state_dir, info, {
        "agent.key": key_pem, "identity.txt": identity_text.encode(),
        "ca.crt": ca_pem.encode(), "agent.crt": cert_pem.encode(),
    })


def _detail(r: httpx.Response) -> str:
    try:
        d = r.json().get("detail")
    except ValueError:
        d = None
    return str(d or r.reason_phrase or r.status_code)[:300]
