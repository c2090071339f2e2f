"""The optional control plane, ``dbcrate server`` (the ``server`` extra; see
docs/control-plane.md): a metadata DB (schedules, definitions, the manifest index,
commands, the per-org audit log), a JSON API and dashboard, and the agents' mTLS
listener. It never touches storage, databases or a private key."""
