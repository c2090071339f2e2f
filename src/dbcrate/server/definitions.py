"""Server-defined job and target tables: what may be set, and sealing their secrets to
the agent's recipient on receipt (a plain ``password``, ``secret_key``, ``access_key``
or ``session_token`` becomes ``KEY_sealed``; a value already armored by ``age -a -r``
is kept as it is)."""

from __future__ import annotations

from typing import Any

from dbcrate import wire
from dbcrate.errors import DbcrateError
from dbcrate.operations.seal import is_sealed, seal


class DefinitionRefused(DbcrateError):
    """A definition sets a key the server may not set, or holds an identity (HTTP 422)."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key


def prepare(body: dict[str, Any], kind: str, name: str, recipient: str) -> dict[str, Any]:
    """The table to store: refused keys rejected, secrets sealed. Raises
    ``DefinitionRefused`` naming the key."""
    where = f"{kind}s.{name}."
    if wire.holds_age_identity(body):
        raise DefinitionRefused(where.rstrip("."), "an age identity must never be sent")
    bad = wire.forbidden_key(body)
    if bad:
        raise DefinitionRefused(where + bad, "the control plane may not set this key (it "
                                "chooses encryption or runs a program); set it in the "
                                "agent's local config")
    if kind == "job" and ("name" in body and body["name"] != name):
        raise DefinitionRefused(where + "name", f"must be {name!r} (the URL's job)")
    out: dict[str, Any] = {}
    for k, v in body.items():
        base = k.removesuffix(wire.SEALED_SUFFIX)
        if base in wire.SEALED_KEYS and isinstance(v, str):
            if k.endswith(wire.SEALED_SUFFIX) and not is_sealed(v):
                raise DefinitionRefused(where + k, "expected age armor (age -a -r RECIPIENT)")
            out[base + wire.SEALED_SUFFIX] = v if is_sealed(v) else seal(v, recipient)
        else:
            out[k] = v
    if kind == "job":
        out["name"] = name
    return out
