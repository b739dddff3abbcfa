"""Command-line options shared by several subcommands."""

from __future__ import annotations

import argparse
import os

from federation.errors import ConfigError
from federation.transport.security import TransportSecurity

__all__ = ["add_security_args", "security_from_args"]


def add_security_args(p: argparse.ArgumentParser, whose: str) -> None:
    """``--credentials DIR`` (default ``$FEDERATION_CREDENTIALS``) and ``--insecure``."""
    p.add_argument(
        "--credentials",
        default=os.environ.get("FEDERATION_CREDENTIALS"),
        metavar="DIR",
        help=f"{whose} certificate and key from `federation pki issue` (mutual TLS; "
        "default: $FEDERATION_CREDENTIALS)",
    )
    p.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext gRPC without identities: local simulations only (warns)",
    )


def security_from_args(
    args: argparse.Namespace, who: str, *, crl: str | None = None
) -> TransportSecurity:
    """Mutual TLS with ``--credentials`` (and the CA's ``crl``, for a server), or
    plaintext with ``--insecure`` (one of them).

    Raises:
        ConfigError: Neither or both.
    """
    if args.insecure and args.credentials:
        raise ConfigError("pass --credentials or --insecure, not both")
    if args.insecure:
        return TransportSecurity.insecure(who)
    if not args.credentials:
        raise ConfigError(
            "pass --credentials DIR (a certificate from `federation pki issue`; or set "
            "$FEDERATION_CREDENTIALS), or --insecure for a local plaintext simulation"
        )
    return TransportSecurity.mutual_tls(args.credentials, crl=crl)
