#!/usr/bin/env python3
"""Decrypt a dbcrate aes-256-gcm stream by hand: stdin -> stdout.

    dbcrate-aes-decrypt.py KEYFILE < backup.pgdump.zst.aes > backup.pgdump.zst

KEYFILE holds the base64 256-bit ``encryption_key`` the backup was made with.
Needs only Python 3 and the ``cryptography`` package (no dbcrate). Each chunk is
authenticated before it is written; a non-zero exit means the output is incomplete
and must be discarded. The format is described in dbcrate's docs/format.md.

Exit codes: 0 success, 2 usage or unreadable key, 3 wrong key,
4 corrupted data, 5 truncated data.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import sys
from typing import BinaryIO

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

MAGIC = b"dbcrate/aes-256-gcm\n"
VERSION = 1
SALT_SIZE, CHECK_SIZE, SUM_SIZE = 32, 16, 8
HEADER_SIZE = len(MAGIC) + 1 + SALT_SIZE + CHECK_SIZE + SUM_SIZE
INFO = b"dbcrate aes-256-gcm v1"
CHUNK, TAG = 64 * 1024, 16
UNIT = 1 + CHUNK + TAG  # flag byte, ciphertext, tag of a full chunk


class Failure(Exception):
    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.code = code


def read_key(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            text = f.read().strip()
        key = base64.b64decode(text, validate=True)
    except OSError as exc:
        raise Failure(f"cannot read the key file: {exc.strerror}", 2) from None
    except binascii.Error:
        raise Failure("the key file does not hold base64", 2) from None
    if len(key) != 32:
        raise Failure("the key file must hold a base64-encoded 32-byte key", 2)
    return key


def read_exact(stream: BinaryIO, size: int) -> bytes:
    parts, got = [], 0
    while got < size:
        part = stream.read(size - got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def nonce(counter: int, last: bool) -> bytes:
    return ((counter << 8) | int(last)).to_bytes(12, "big")


def opens(aead: AESGCM, counter: int, body: bytes, header: bytes, last: bool) -> bool:
    """Whether ``body`` authenticates as chunk ``counter`` (as the last one if ``last``)."""
    try:
        aead.decrypt(nonce(counter, last), body, header)
    except InvalidTag:
        return False
    return True


def decrypt(master: bytes, src: BinaryIO, dst: BinaryIO) -> None:
    header = read_exact(src, HEADER_SIZE)
    if not MAGIC.startswith(header[: len(MAGIC)]):
        raise Failure("not a dbcrate aes-256-gcm stream", 4)
    if len(header) < HEADER_SIZE:
        raise Failure("the stream ends inside its header (truncated)", 5)
    if header[len(MAGIC)] != VERSION:
        raise Failure(f"unsupported format version {header[len(MAGIC)]}", 4)
    if hashlib.sha256(header[:-SUM_SIZE]).digest()[:SUM_SIZE] != header[-SUM_SIZE:]:
        raise Failure("the header is damaged (checksum mismatch)", 4)
    salt = header[len(MAGIC) + 1 : len(MAGIC) + 1 + SALT_SIZE]
    check = header[len(MAGIC) + 1 + SALT_SIZE : -SUM_SIZE]
    okm = HKDF(algorithm=hashes.SHA256(), length=48, salt=salt, info=INFO).derive(master)
    if not hmac.compare_digest(okm[32:], check):
        raise Failure("wrong key: this is not the key the backup was encrypted with", 3)
    aead = AESGCM(okm[:32])
    counter = 0
    current = read_exact(src, UNIT)
    while True:
        following = read_exact(src, UNIT)
        last = not following
        if len(current) < 1 + TAG:
            raise Failure("the stream ends before its last chunk (truncated)", 5)
        flag, body = current[0], current[1:]
        if flag not in (0, 1) or (flag == 1) != last:
            if last and flag == 0 and not opens(aead, counter, body, header, True):
                full = len(current) == UNIT
                if not full or opens(aead, counter, body, header, False):
                    raise Failure("the stream ends before its last chunk (truncated)", 5)
            raise Failure(f"chunk {counter} has a bad flag (damaged or data appended)", 4)
        try:
            plain = aead.decrypt(nonce(counter, last), body, header)
        except InvalidTag:
            raise Failure(f"chunk {counter} failed authentication (damaged)", 4) from None
        if last and not plain and counter:
            raise Failure("empty last chunk after other chunks (damaged)", 4)
        dst.write(plain)
        if last:
            return
        counter += 1
        current = following


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[1] in ("-h", "--help"):
        print(__doc__, file=sys.stderr)
        return 2
    try:
        decrypt(read_key(argv[1]), sys.stdin.buffer, sys.stdout.buffer)
        sys.stdout.buffer.flush()
    except Failure as exc:
        print(f"dbcrate-aes-decrypt: error: {exc}", file=sys.stderr)
        return exc.code
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
