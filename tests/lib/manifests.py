"""A complete, valid manifest for catalog tests (no storage, no data object)."""

from __future__ import annotations

from datetime import datetime, timedelta

from dbcrate import catalog
from dbcrate.model import Digest, Manifest


def manifest_at(started: datetime, job: str = "orders", status: str = "complete") -> Manifest:
    """A manifest of a ``job`` backup started at ``started``: its id and key from that
    time, as ``dbcrate backup`` makes them."""
    bid = catalog.new_id(started)
    return Manifest(
        format=catalog.FORMAT, id=bid, job=job, engine="postgres", server_version="17.11",
        tool="pg_dump", tool_version="17.11", stages=("zstd", "age"), started_at=started,
        finished_at=started + timedelta(minutes=5), plaintext=Digest(10, "a" * 64),
        stored=Digest(5, "b" * 64), encryption="age", recipients=("abcd" * 4,),
        dbcrate_version="0.1.0", status=status,
        data_key=catalog.data_key(job, started, bid, ("pgdump", "zst", "age")),
    )
