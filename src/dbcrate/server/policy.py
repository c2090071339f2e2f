"""Who may do what: one table of actions -> the lowest role allowed (pure).

viewer: read; operator: + backup now, restore; admin: + users, tokens, agents,
definitions. Roles are per org."""

from __future__ import annotations

ROLES = ("viewer", "operator", "admin")
_RANK = {r: i for i, r in enumerate(ROLES)}

POLICY: dict[str, str] = {
    "read": "viewer",
    "backup": "operator",
    "restore": "operator",
    "agents.revoke": "admin",
    "definitions.write": "admin",
    "tokens.create": "admin",
    "users.manage": "admin",
}


def allowed(role: str, action: str) -> bool:
    """Whether ``role`` may do ``action`` (unknown roles and actions: no)."""
    need = POLICY.get(action)
    return need is not None and role in _RANK and _RANK[role] >= _RANK[need]
