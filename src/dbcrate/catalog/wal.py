"""WAL archive keys and names (docs/format.md, "WAL archive"). Pure functions.

``{job}/wal/{TLI}/{file}-{sha256 of plaintext}.{stage exts}`` for segments, ``.history``,
``.backup`` and ``.partial`` files; ``{job}/wal/archive.json`` holds the cluster's system
identifier and segment size. LSNs are ``X/Y`` (two hex halves of a 64-bit position).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

#: a segment file name: timeline, log, segment (8 hex digits each)
SEGMENT = re.compile(r"[0-9A-F]{24}")
HISTORY = re.compile(r"[0-9A-F]{8}\.history")
BACKUP = re.compile(r"[0-9A-F]{24}\.[0-9A-F]{8}\.backup")
PARTIAL = re.compile(r"[0-9A-F]{24}\.partial")
_KEY = re.compile(r"(?P<name>[0-9A-F]{8}(?:[0-9A-F]{16}(?:\.[0-9A-F]{8}\.backup|\.partial)?"
                  r"|\.history))-(?P<sha>[0-9a-f]{64})(?P<exts>(?:\.[a-z0-9]+)*)")


def wal_prefix(job: str) -> str:
    """``{job}/wal/``: every WAL object of the job is under it."""
    return f"{job}/wal/"


def archive_json_key(job: str) -> str:
    return f"{job}/wal/archive.json"


def is_wal_name(name: str) -> bool:
    """A file name ``wal-push`` archives (segment, history, backup label or partial)."""
    return any(p.fullmatch(name) for p in (SEGMENT, HISTORY, BACKUP, PARTIAL))


def timeline_of(name: str) -> str:
    """The 8-hex-digit timeline a WAL file name belongs to."""
    return name[:8]


def name_prefix(job: str, name: str) -> str:
    """The key prefix every stored copy of WAL file ``name`` starts with."""
    return f"{wal_prefix(job)}{timeline_of(name)}/{name}-"


def wal_key(job: str, name: str, sha256: str, exts: Sequence[str]) -> str:
    """``{job}/wal/{TLI}/{name}-{sha256}.{exts}``."""
    suffix = "".join(f".{e}" for e in exts if e)
    return f"{name_prefix(job, name)}{sha256}{suffix}"


@dataclass(frozen=True)
class WalObject:
    """One stored WAL file, parsed from its key."""

    key: str
    name: str
    sha256: str
    size: int = 0
    #: when the target stored it (an upper bound of the time of what it holds)
    modified: datetime | None = None

    @property
    def timeline(self) -> int:
        return int(self.name[:8], 16)

    @property
    def is_segment(self) -> bool:
        return bool(SEGMENT.fullmatch(self.name))


def parse_wal_key(key: str, job: str, size: int = 0,
                  modified: datetime | None = None) -> WalObject | None:
    """The WAL object at ``key`` (None for any other key under the job's wal/)."""
    prefix = wal_prefix(job)
    if not key.startswith(prefix):
        return None
    rest = key[len(prefix):]
    tli, _, leaf = rest.partition("/")
    m = _KEY.fullmatch(leaf)
    if m is None or timeline_of(m["name"]) != tli:
        return None
    return WalObject(key=key, name=m["name"], sha256=m["sha"], size=size, modified=modified)


# -- LSNs and segments -------------------------------------------------------------------


def parse_lsn(text: str) -> int:
    """``16/B374D848`` -> int. Raises ``ValueError``."""
    hi, sep, lo = text.strip().partition("/")
    if not sep or not hi or not lo or len(hi) > 8 or len(lo) > 8:
        raise ValueError(f"not an LSN: {text!r}")
    return int(hi, 16) << 32 | int(lo, 16)


def format_lsn(lsn: int) -> str:
    return f"{lsn >> 32:X}/{lsn & 0xFFFFFFFF:X}"


def segment_no(lsn: int, seg_size: int) -> int:
    """The segment number holding ``lsn``."""
    return lsn // seg_size


def segment_name(tli: int, segno: int, seg_size: int) -> str:
    """The file name of segment ``segno`` on timeline ``tli``."""
    per_log = 0x100000000 // seg_size
    return f"{tli:08X}{segno // per_log:08X}{segno % per_log:08X}"


def parse_segment(name: str, seg_size: int) -> tuple[int, int]:
    """``(timeline, segno)`` of a segment file name."""
    per_log = 0x100000000 // seg_size
    return int(name[:8], 16), int(name[8:16], 16) * per_log + int(name[16:24], 16)


def history_name(tli: int) -> str:
    return f"{tli:08X}.history"


def parse_history(text: str) -> list[tuple[int, int]]:
    """A ``.history`` file's ``(parent timeline, switch LSN)`` lines, oldest first."""
    out = []
    for line in text.splitlines():
        fields = line.split("#", 1)[0].split()
        if len(fields) >= 2 and fields[0].isdigit():
            try:
                out.append((int(fields[0]), parse_lsn(fields[1])))
            except ValueError:
                continue
    return out
