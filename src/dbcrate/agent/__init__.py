"""The agent daemon (``dbcrate agent``): schedules, catch-up, retention after each success,
audit, notifications, status and metrics. See docs/agent.md."""
