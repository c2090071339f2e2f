"""Notifications through apprise (imported only when something is sent).

One ``[[notify]]`` entry is one apprise URL; it is a secret, so it never appears in a
log line, an error or the audit log (a failure names the entry's index and scheme).
A failed delivery never fails a backup: :func:`send` returns the failures.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from dbcrate.config.agent import NotifyConfig

log = logging.getLogger("dbcrate.notify")

#: our event -> apprise notify type
TYPES = {"failure": "failure", "success": "success", "max_age": "warning",
         "max_rpo": "warning"}


@dataclass(frozen=True)
class Message:
    event: str  # failure | success | max_age | max_rpo
    job: str
    title: str
    body: str


def failure(job: str, message: str, hint: str | None) -> Message:
    body = message + (f"\nhint: {hint}" if hint else "")
    return Message("failure", job, f"dbcrate: {job} backup failed", body)


def success(job: str, backup_id: str, size: int, targets: Sequence[str]) -> Message:
    return Message("success", job, f"dbcrate: {job} backup ok",
                   f"backup {backup_id} ({size} bytes stored) on {', '.join(targets)}")


def overdue(job: str, max_age: str, last: str | None) -> Message:
    body = (f"the newest successful backup of {job} finished at {last}" if last
            else f"{job} has no successful backup")
    return Message("max_age", job, f"dbcrate: {job} backup older than {max_age}", body)


def rpo_exceeded(job: str, max_rpo: str, rpo_seconds: int, last: str | None) -> Message:
    body = (f"the newest archived WAL of {job} ({last or 'none'}) is {rpo_seconds} s "
            "behind the server")
    return Message("max_rpo", job, f"dbcrate: {job} WAL archive behind by more than "
                   f"{max_rpo}", body)


def describe(index: int, entry: NotifyConfig) -> str:
    """How a failure names an entry: its index and scheme, never the URL."""
    scheme = entry.url.split("://", 1)[0] if "://" in entry.url else "?"
    return f"notify[{index}] ({scheme if scheme.isalnum() else '?'})"


def send(entries: Sequence[NotifyConfig], msg: Message) -> list[str]:
    """Deliver ``msg`` to every entry that wants it; returns a description of each
    entry whose delivery failed (empty if all succeeded or none wanted it). Never raises
    for a delivery problem."""
    wanted = [(i, e) for i, e in enumerate(entries) if e.wants(msg.event, msg.job)]
    if not wanted:
        return []
    import apprise

    logging.getLogger("apprise").setLevel(logging.CRITICAL + 1)  # it may log URL parts
    failed = []
    for i, entry in wanted:
        app = apprise.Apprise()
        ok = False
        try:
            if app.add(entry.url):
                ok = bool(app.notify(title=msg.title, body=msg.body,
                                     notify_type=TYPES[msg.event]))
        except Exception:  # apprise plugins may raise anything; the URL stays unlogged
            ok = False
        if not ok:
            name = describe(i, entry)
            log.warning("notification %s for job %s could not be delivered", name, msg.job)
            failed.append(name)
    return failed
