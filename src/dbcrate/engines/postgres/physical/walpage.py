"""The long page header at the start of every WAL segment (``XLogLongPageHeaderData``):
the cluster's system identifier and the segment size, so a segment of another cluster is
refused. Pure."""

from __future__ import annotations

import struct
from dataclasses import dataclass

#: xlp_info bit of a long header (the first page of a segment)
XLP_LONG_HEADER = 0x0002
#: magic(2) info(2) tli(4) pageaddr(8) rem_len(4) pad(4) sysid(8) seg_size(4) blcksz(4)
_LONG = struct.Struct("<HHIQI4xQII")
HEADER_SIZE = _LONG.size


@dataclass(frozen=True)
class SegmentHeader:
    magic: int
    timeline: int
    page_address: int
    system_identifier: int
    segment_size: int
    block_size: int


def read_header(data: bytes) -> SegmentHeader | None:
    """The long header of a segment's first bytes; None if ``data`` does not start with
    one (too short, or not a long header)."""
    if len(data) < HEADER_SIZE:
        return None
    magic, info, tli, addr, _rem, sysid, seg, blck = _LONG.unpack_from(data)
    if not info & XLP_LONG_HEADER or seg == 0 or seg & (seg - 1) or blck == 0:
        return None
    return SegmentHeader(magic, tli, addr, sysid, seg, blck)


def pg_control_system_identifier(data: bytes) -> int | None:
    """The system identifier: the first 8 bytes of ``global/pg_control``."""
    if len(data) < 8:
        return None
    return int(struct.unpack_from("<Q", data)[0])
