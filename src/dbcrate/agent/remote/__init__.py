"""The agent's side of the control plane (docs/control-plane.md): enrollment (key, CSR
and age identity made here, the CA checked against the token), the outbound mTLS client
and the link thread (heartbeat, config, command long-poll, events, renewal). Needs only
httpx and cryptography."""
