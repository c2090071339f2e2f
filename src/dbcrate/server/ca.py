"""The control plane's certificate authority: an ECDSA P-256 key (``ca/ca.key``, mode
0600, never in the DB) and a self-signed certificate; it signs the agent-listener's
server certificate and each agent's client certificate from the agent's CSR (the agent's
key never leaves its host)."""

from __future__ import annotations

import hashlib
import ipaddress
import os
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dbcrate.errors import ControlPlaneError

CA_KEY = "ca.key"
CA_CERT = "ca.crt"
SERVER_KEY = "agent-listener.key"
SERVER_CERT = "agent-listener.crt"


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def fingerprint(cert_pem: bytes) -> str:
    """SHA-256 hex of the certificate's DER encoding."""
    der = x509.load_pem_x509_certificate(cert_pem).public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def key_sha256(public_key: ec.EllipticCurvePublicKey | object) -> str:
    """SHA-256 hex of a public key's SubjectPublicKeyInfo (DER): the pinned identity."""
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    der = public_key.public_bytes(serialization.Encoding.DER,
                                  serialization.PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


def _builder(subject: x509.Name, issuer: x509.Name, public_key: object, life: timedelta,
             now: datetime, backdate: timedelta = timedelta(minutes=1)) -> x509.CertificateBuilder:
    """``backdate``: for certificates other clocks check (the CA, the listener); an
    agent's certificate is checked only by this server's clock, so it starts now and
    its life (and its renewal at 2/3) is exactly ``agent_cert_ttl``."""
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
            .public_key(public_key).serial_number(x509.random_serial_number())
            .not_valid_before(now - backdate).not_valid_after(now + life))


@dataclass
class CA:
    """The CA of one data dir."""

    dir: Path

    @property
    def cert_path(self) -> Path:
        return self.dir / CA_CERT

    def cert_pem(self) -> bytes:
        return self.cert_path.read_bytes()

    def fingerprint(self) -> str:
        return fingerprint(self.cert_pem())

    def create(self, org: str, listener_hosts: list[str]) -> None:
        """Make the CA key and certificate and the agent listener's certificate.
        Raises ``ControlPlaneError`` if a CA key already exists (never overwritten)."""
        if (self.dir / CA_KEY).exists():
            raise ControlPlaneError(f"{self.dir / CA_KEY} already exists",
                                    hint="this data dir is already initialised")
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        now = datetime.now(UTC)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"dbcrate CA ({org})")])
        cert = (_builder(name, name, key.public_key(), timedelta(days=3650), now)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(False, False, False, False, False, True, True,
                                             False, False), critical=True)
                .sign(key, hashes.SHA256()))
        _write_private(self.dir / CA_KEY, _pem_key(key))
        self.cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        self.issue_listener(listener_hosts)

    def _key(self) -> ec.EllipticCurvePrivateKey:
        key = serialization.load_pem_private_key((self.dir / CA_KEY).read_bytes(), None)
        assert isinstance(key, ec.EllipticCurvePrivateKey)
        return key

    def _cert(self) -> x509.Certificate:
        return x509.load_pem_x509_certificate(self.cert_pem())

    def issue_listener(self, hosts: list[str]) -> None:
        """(Re)issue the agent listener's server certificate for ``hosts``."""
        key = ec.generate_private_key(ec.SECP256R1())
        names: list[x509.GeneralName] = []
        for h in dict.fromkeys([*hosts, "localhost", "127.0.0.1"]):
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(h)))
            except ValueError:
                names.append(x509.DNSName(h))
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
        cert = (_builder(subject, self._cert().subject, key.public_key(), timedelta(days=825),
                         datetime.now(UTC))
                .add_extension(x509.SubjectAlternativeName(names), critical=False)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                               critical=False)
                .sign(self._key(), hashes.SHA256()))
        for p in (self.dir / SERVER_KEY, self.dir / SERVER_CERT):
            p.unlink(missing_ok=True)
        _write_private(self.dir / SERVER_KEY, _pem_key(key))
        (self.dir / SERVER_CERT).write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def sign_agent(self, csr_pem: str, name: str, org: str,
                   life: timedelta) -> x509.Certificate:
        """A client certificate for the CSR's key (CN = agent name, O = org). Raises
        ``ControlPlaneError`` for a malformed CSR, a bad signature or a non-P-256 key."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except (ValueError, UnicodeError):
            raise ControlPlaneError("csr: not a PEM certificate signing request") from None
        pub = csr.public_key()
        if not csr.is_signature_valid or not isinstance(pub, ec.EllipticCurvePublicKey) \
                or not isinstance(pub.curve, ec.SECP256R1):
            raise ControlPlaneError("csr: expected an ECDSA P-256 request signed by its key")
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name),
                             x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)])
        return (_builder(subject, self._cert().subject, pub, life, datetime.now(UTC),
                         backdate=timedelta(0))
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                               critical=False)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .sign(self._key(), hashes.SHA256()))


def csr_key_sha256(csr_pem: str) -> str:
    """The pinned-key hash of a CSR's public key. Raises ``ControlPlaneError``."""
    try:
        return key_sha256(x509.load_pem_x509_csr(csr_pem.encode()).public_key())
    except (ValueError, UnicodeError, AssertionError):
        raise ControlPlaneError("csr: not a PEM ECDSA certificate signing request") from None


def cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()
