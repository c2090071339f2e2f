"""The C chunk walk (``_chunkwalk.c``, built by setup.py when a compiler is present)."""

from typing_extensions import Buffer

def walk(data: Buffer, pos: int, left: int, /) -> tuple[int, int, int, bool]:
    """Count and skip the chunks of a data block (4-byte ints) in ``data`` from ``pos``,
    after the ``left`` bytes of a chunk begun in an earlier buffer; returns
    ``(pos, count, left, at_header)`` (``_chunkwalk.c`` says when it stops). Raises
    ``TypeError``, ``BufferError``, ``ValueError`` or ``OverflowError`` for bad
    arguments, never for the bytes read."""
