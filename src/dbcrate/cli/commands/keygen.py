"""``dbcrate keygen [-o FILE] [--signing]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from dbcrate.errors import UsageError
from dbcrate.operations.keys import new_identity, write_identity, write_signing_key


def register(sub: Any, common: argparse.ArgumentParser) -> None:
    """Add ``keygen`` to the subparsers ``sub``."""
    p = sub.add_parser("keygen", parents=[common],
                       help="create an age identity and print its recipient")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the identity here (mode 0600; never overwritten)")
    p.add_argument("--signing", action="store_true",
                   help="create an Ed25519 manifest signing key instead (OpenSSH format, "
                   "needs -o) and print its `ssh-ed25519 ...` line for trusted_signers")
    p.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    """Write a new age identity (0600, never overwriting) and print its recipient."""
    if args.signing:
        return _signing(args)
    if args.output is None:
        text, recipient = new_identity()
        sys.stderr.write(f"Public key: {recipient}\n")
        sys.stdout.write(text)
        return 0
    recipient = write_identity(args.output)
    sys.stderr.write(f"wrote identity to {args.output} (keep it secret and keep a copy "
                     "offline)\n")
    sys.stdout.write(recipient + "\n")
    return 0


def _signing(args: argparse.Namespace) -> int:
    """Write a new Ed25519 signing key (OpenSSH format, 0600) and print its public line."""
    if args.output is None:
        raise UsageError("keygen --signing needs -o FILE",
                         hint="the private key is written only to a file (mode 0600)")
    public = write_signing_key(args.output)
    sys.stderr.write(f"wrote signing key to {args.output}: set signing_key_file to it on "
                     "the backing-up host, and put this line in trusted_signers where "
                     "backups are restored\n")
    sys.stdout.write(public + "\n")
    return 0
