"""A pass-through stage over a tar stream that keeps a few small members' contents
(``backup_label``, ``backup_manifest``, the start of ``global/pg_control``) as they go by,
so a base backup's metadata is learnt without writing the tar anywhere."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

BLOCK = 512


def _octal(field: bytes) -> int:
    text = field.rstrip(b"\0 ").strip()
    if not text:
        return 0
    if field[0] & 0x80:  # GNU base-256 size
        return int.from_bytes(field[1:], "big")
    return int(text, 8)


class TarScan:
    """Call it over the tar's chunks; afterwards ``members[name]`` holds the first
    ``limits[name]`` bytes of each wanted member, ``names`` every member's name."""

    def __init__(self, limits: dict[str, int]) -> None:
        self.limits = limits
        self.members: dict[str, bytes] = {}
        self.names: list[str] = []
        self._buf = bytearray()
        self._skip = 0  # data bytes (incl. padding) of the current member still to pass
        self._keep: str | None = None
        self._keep_left = 0
        self._ended = False

    def __call__(self, chunks: Iterable[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            self._scan(chunk)
            yield chunk

    def _scan(self, data: bytes) -> None:
        view = memoryview(data)
        while view and not self._ended:
            if self._skip:
                n = min(self._skip, len(view))
                if self._keep is not None and self._keep_left:
                    take = min(n, self._keep_left)
                    self.members[self._keep] = self.members.get(self._keep, b"") + bytes(
                        view[:take])
                    self._keep_left -= take
                self._skip -= n
                view = view[n:]
                if not self._skip:
                    self._keep = None
                continue
            need = BLOCK - len(self._buf)
            self._buf += view[:need]
            view = view[need:]
            if len(self._buf) == BLOCK:
                self._header(bytes(self._buf))
                self._buf.clear()

    def _header(self, block: bytes) -> None:
        if block == b"\0" * BLOCK:
            self._ended = True
            return
        name = block[:100].split(b"\0", 1)[0].decode("utf-8", "replace")
        prefix = block[345:500].split(b"\0", 1)[0].decode("utf-8", "replace")
        if block[257:262] == b"ustar" and prefix:
            name = f"{prefix}/{name}"
        size = _octal(block[124:136])
        self.names.append(name)
        self._skip = (size + BLOCK - 1) // BLOCK * BLOCK
        clean = name.removeprefix("./")
        if clean in self.limits and size:
            self._keep, self._keep_left = clean, min(size, self.limits[clean])
        else:
            self._keep = None
