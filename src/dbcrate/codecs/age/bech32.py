"""Bech32 (BIP 173) encoding as age uses it for keys: no length limit, one case only."""

from __future__ import annotations

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_VALUES = {c: i for i, c in enumerate(_CHARSET)}
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


class Bech32Error(ValueError):
    """The string is not valid bech32 (callers map it to their own error)."""


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = ((chk & 0x1FFFFFF) << 5) ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GENERATOR[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert_bits(data: bytes | list[int], from_bits: int, to_bits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    max_v = (1 << to_bits) - 1
    max_acc = (1 << (from_bits + to_bits - 1)) - 1
    for value in data:
        acc = ((acc << from_bits) | value) & max_acc
        bits += from_bits
        while bits >= to_bits:
            bits -= to_bits
            out.append((acc >> bits) & max_v)
    if pad:
        if bits:
            out.append((acc << (to_bits - bits)) & max_v)
    elif bits >= from_bits or (acc << (to_bits - bits)) & max_v:
        raise Bech32Error("invalid padding")
    return out


def encode(hrp: str, data: bytes) -> str:
    """Encode ``data`` under the human-readable part ``hrp`` (lowercase result)."""
    hrp = hrp.lower()
    values = _convert_bits(data, 8, 5, pad=True)
    polymod = _polymod([*_hrp_expand(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(polymod >> 5 * (5 - i)) & 31 for i in range(6)]
    return hrp + "1" + "".join(_CHARSET[v] for v in values + checksum)


def decode(text: str) -> tuple[str, bytes]:
    """Return ``(hrp, data)`` of a bech32 string; the hrp is lowercased.

    Raises ``Bech32Error`` for mixed case, bad characters, a bad checksum or padding.
    """
    if text.lower() != text and text.upper() != text:
        raise Bech32Error("mixed case")
    text = text.lower()
    pos = text.rfind("1")
    if pos < 1 or pos + 7 > len(text):
        raise Bech32Error("separator misplaced")
    hrp = text[:pos]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise Bech32Error("invalid human-readable part")
    try:
        values = [_VALUES[c] for c in text[pos + 1 :]]
    except KeyError:
        raise Bech32Error("invalid character") from None
    if _polymod([*_hrp_expand(hrp), *values]) != 1:
        raise Bech32Error("checksum mismatch")
    return hrp, bytes(_convert_bits(values[:-6], 5, 8, pad=False))
