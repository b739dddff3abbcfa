"""``federation pki``: the federation's CA: init, issue, revoke, list.

The CA directory is ``--dir``, else ``$FEDERATION_PKI``, else ``./pki``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys

__all__ = ["add_parser", "run"]

# The values of federation.pki.Role, spelled out so that building the parser does not
# import the PKI (tests/unit/pki/test_cli.py keeps the two equal).
_ROLES = ("node", "analyst", "auditor", "coordinator", "admin")


def _add_dir_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--dir",
        default=os.environ.get("FEDERATION_PKI", "pki"),
        metavar="DIR",
        help="the CA directory (default: $FEDERATION_PKI or ./pki)",
    )


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``pki init``, ``pki issue``, ``pki revoke`` and ``pki list``."""
    pki = sub.add_parser("pki", help="the federation's certificate authority")
    actions = pki.add_subparsers(dest="pki_command", required=True, metavar="ACTION")

    init = actions.add_parser("init", help="create the CA of a federation")
    init.add_argument("--federation", required=True, metavar="NAME", help="federation name")
    _add_dir_arg(init)
    init.add_argument("--days", type=int, default=3650, help="CA validity (%(default)s days)")

    issue = actions.add_parser("issue", help="issue a key and certificate for a party")
    issue.add_argument("role", choices=_ROLES)
    issue.add_argument("name", help="the party's name (a coordinator's: its host name)")
    issue.add_argument(
        "--host",
        action="append",
        default=[],
        metavar="H",
        help="coordinator only, repeatable: a DNS name or IP address it serves on "
        "(default: NAME, localhost, 127.0.0.1)",
    )
    issue.add_argument("--days", type=int, default=365, help="validity (%(default)s days)")
    issue.add_argument("--out", metavar="DIR", help="write here (default: DIR/issued/ROLE/NAME)")
    _add_dir_arg(issue)

    revoke = actions.add_parser("revoke", help="revoke a party's certificates; re-sign the CRL")
    revoke.add_argument("name")
    revoke.add_argument("--role", choices=_ROLES, help="only the certificates in this role")
    revoke.add_argument("--reason", help="why (kept in the CA's index)")
    _add_dir_arg(revoke)

    crl = actions.add_parser(
        "crl", help="re-sign the CRL for 7 more days (run daily, e.g. from cron)"
    )
    _add_dir_arg(crl)

    listing = actions.add_parser("list", help="list issued certificates")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    _add_dir_arg(listing)


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    """Run one of the ``pki`` actions."""
    from federation import pki

    out = sys.stdout
    if args.pki_command == "init":
        ca = pki.init_ca(args.dir, args.federation, valid_days=args.days)
        out.write(f"created the CA of federation {ca.federation!r} in {ca.directory}\n")
        for path in (ca.key_path, ca.certificate_path, ca.crl_path, ca.index_path):
            out.write(f"  {path}\n")
        return 0
    if args.pki_command == "issue":
        cred = pki.issue(
            args.dir, args.role, args.name, hosts=args.host, valid_days=args.days, out=args.out
        )
        ident = cred.identity
        out.write(
            f"issued {ident.uri} (serial {ident.serial:x}, expires "
            f"{ident.not_after.date().isoformat()})\n"
        )
        for path in cred.paths:
            out.write(f"  {path}\n")
        return 0
    if args.pki_command == "revoke":
        serials = pki.revoke(args.dir, args.name, role=args.role, reason=args.reason)
        for serial in serials:
            out.write(f"revoked serial {serial:x}\n")
        out.write(f"re-signed {pki.open_ca(args.dir).crl_path}\n")
        return 0
    if args.pki_command == "crl":
        out.write(f"re-signed {pki.refresh_crl(args.dir)} (valid for 7 days)\n")
        return 0
    return _list(args)


def _list(args: argparse.Namespace) -> int:
    from federation import pki

    out = sys.stdout
    entries = pki.open_ca(args.dir).entries()
    if args.format == "json":
        out.write(json.dumps([e.to_dict() for e in entries], indent=2) + "\n")
        return 0
    if not entries:
        out.write("no certificates issued\n")
        return 0
    rows = [["ROLE", "NAME", "SERIAL", "EXPIRES", "REVOKED"]]
    rows += [
        [
            e.role.value,
            e.name,
            e.serial_hex,
            e.not_after.isoformat(timespec="seconds"),
            e.revoked_at.isoformat(timespec="seconds") if e.revoked_at else "-",
        ]
        for e in entries
    ]
    out.write(_table(rows) + "\n")
    return 0
