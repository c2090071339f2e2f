"""Manifests for pure retention tests."""

from __future__ import annotations

from datetime import datetime

from dbcrate import catalog
from dbcrate.model import Digest, Manifest


def backup(at: datetime, status: str = "complete") -> Manifest:
    bid = catalog.new_id(at)
    return Manifest(
        format=1, id=bid, job="j", engine="postgres", server_version="17", tool="pg_dump",
        tool_version="17", stages=(), started_at=at, finished_at=at, plaintext=Digest(1, "a"),
        stored=Digest(1, "a"), encryption="none", status=status, data_key=f"j/{bid}",
    )
