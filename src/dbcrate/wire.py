"""What the agent and the control plane agree on (docs/control-plane.md): the canonical
JSON of a record an agent signs (ECDSA P-256, SHA-256, with the key pinned at
enrollment), the keys a server definition may never set, and the secrets it seals.
Pure; imported by both ``agent.remote`` and ``server``."""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

API = "/agent/v1"
#: job/target keys whose plain value the server seals to the agent's recipient
SEALED_KEYS = ("password", "secret_key", "access_key", "session_token")
SEALED_SUFFIX = "_sealed"
#: keys a server definition may never set: they choose encryption or run programs
_FORBIDDEN = re.compile(r"^(recipients|recipient|encrypt.*|encryption_key(_file)?|"
                        r".*_command|.*_bin_dir|.*_path|.*_tool|fetch_tools|trusted_signers|"
                        r"signing_key(_file)?|identity_file)$")
AGE_SECRET = re.compile(r"AGE-SECRET-KEY-1[0-9A-Z]+", re.IGNORECASE)


def canonical(record: Mapping[str, Any]) -> bytes:
    """The bytes a record's signature covers: sorted keys, no spaces, UTF-8, without
    ``signature``."""
    body = {k: v for k, v in record.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=False).encode("utf-8")


def sign(key: ec.EllipticCurvePrivateKey, record: Mapping[str, Any]) -> str:
    return base64.b64encode(key.sign(canonical(record), ec.ECDSA(hashes.SHA256()))).decode()


def signature_ok(public_pem: str, record: Mapping[str, Any]) -> bool:
    """Whether ``record["signature"]`` is the pinned key's signature of the record."""
    try:
        pub = serialization.load_pem_public_key(public_pem.encode())
        assert isinstance(pub, ec.EllipticCurvePublicKey)
        pub.verify(base64.b64decode(str(record.get("signature", ""))), canonical(record),
                   ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError, AssertionError):
        return False
    return True


def forbidden_key(table: Mapping[str, Any], where: str = "") -> str | None:
    """The dotted name of the first key (at any depth) a server may not set, else None."""
    for k, v in table.items():
        name = f"{where}{k}"
        if _FORBIDDEN.match(k):
            return name
        if isinstance(v, Mapping):
            found = forbidden_key(v, name + ".")
            if found:
                return found
    return None


def holds_age_identity(value: Any) -> bool:
    """Whether an age identity (``AGE-SECRET-KEY-1...``) appears anywhere in ``value``."""
    return bool(AGE_SECRET.search(json.dumps(value, ensure_ascii=False)))
