"""``federation audit``: verify, export or trace a job through an audit log (a file, or
the coordinator's over gRPC)."""

from __future__ import annotations

import argparse
import base64
import json
import sys

from federation.audit.heads import SignedTreeHead, verify_log
from federation.audit.lineage import lineage
from federation.audit.log import read_log
from federation.audit.merkle import leaf_hash
from federation.cli.options import add_security_args, security_from_args
from federation.errors import ConfigError, UnknownJobError
from federation.transport.audit_service import LogCopy, fetch_log

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``audit verify`` and ``audit export``."""
    audit = sub.add_parser("audit", help="verify or export a tamper-evident audit log")
    actions = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = actions.add_parser("verify", help="recompute the whole log and check its heads")
    _source_args(verify)
    verify.add_argument(
        "--public-key",
        help="the log's Ed25519 public key in hex (pin it; default: the key that came with "
        "the log, which proves integrity only against someone who cannot replace both)",
    )
    export = actions.add_parser("export", help="write every leaf and signed head as JSON lines")
    _source_args(export)
    show = actions.add_parser(
        "show", help="a job's lineage: who asked what, which nodes and data, what was released"
    )
    show.add_argument("job", help="the job id")
    _source_args(show)
    show.add_argument("--public-key", help="pin the log's Ed25519 public key (hex)")


def _source_args(p: argparse.ArgumentParser) -> None:
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--log", help="a log file (e.g. coordinator.db.audit, or a node's)")
    where.add_argument(
        "--coordinator",
        "-c",
        metavar="HOST:PORT",
        help="read the coordinator's log over gRPC (an auditor's or admin's certificate)",
    )
    add_security_args(p, "this auditor's")


def _load(args: argparse.Namespace) -> LogCopy:
    if args.log is not None:
        try:
            return read_log(args.log)
        except (FileNotFoundError, ValueError) as exc:
            raise ConfigError(str(exc)) from None
    return fetch_log(args.coordinator, security_from_args(args, "this auditor"))


def run(args: argparse.Namespace) -> int:
    """Run ``audit verify`` or ``audit export``."""
    entries, roots, heads, stored_key = _load(args)
    if args.audit_command == "show":
        return _show(args, entries, roots, heads, stored_key)
    if args.audit_command == "export":
        out = sys.stdout
        out.write(json.dumps({"public_key": stored_key.hex()}) + "\n")
        for i, entry in enumerate(entries):
            line = {
                "index": i,
                "entry_base64": base64.b64encode(entry).decode(),
                "leaf_hash": leaf_hash(entry).hex(),
            }
            out.write(json.dumps(line) + "\n")
        for h in heads:
            head = {
                "tree_size": h.size,
                "timestamp_ms": h.timestamp_ms,
                "root_hash": h.root.hex(),
                "signature": h.signature.hex(),
            }
            out.write(json.dumps({"signed_tree_head": head}) + "\n")
        return 0
    try:
        key = bytes.fromhex(args.public_key) if args.public_key else stored_key
    except ValueError:
        raise ConfigError("--public-key must be hex") from None
    report = verify_log(entries, heads, key, roots)
    if report.ok:
        sys.stdout.write(
            f"ok: {report.entries} entries, {report.heads} signed tree heads verify "
            f"(key {key.hex()[:16]}...)\n"
        )
        return 0
    where = f" (first bad entry: {report.first_bad})" if report.first_bad is not None else ""
    sys.stdout.write(f"FAILED: {report.problem}{where}\n")
    return 1


def _show(
    args: argparse.Namespace,
    entries: list[bytes],
    roots: list[bytes],
    heads: list[SignedTreeHead],
    stored_key: bytes,
) -> int:
    """Print a job's lineage, after checking the whole log."""
    try:
        key = bytes.fromhex(args.public_key) if args.public_key else stored_key
    except ValueError:
        raise ConfigError("--public-key must be hex") from None
    found = lineage(entries, args.job)
    if not found.found:
        raise UnknownJobError(f"the audit log has no job {args.job!r}")
    sys.stdout.write(found.render() + "\n")
    report = verify_log(entries, heads, key, roots)
    if not report.ok:
        where = f" (first bad entry: {report.first_bad})" if report.first_bad is not None else ""
        sys.stdout.write(f"LOG FAILED VERIFICATION: {report.problem}{where}\n")
        return 1
    covered = max((h.size for h in heads), default=0)
    last = max([i for i, _ in found.events] + [i for i, _, _ in found.receipts])
    sealed = (
        "all covered by"
        if last < covered
        else "not all covered yet by (the next job's head will cover them)"
    )
    sys.stdout.write(
        f"log verifies: {report.entries} entries, {report.heads} signed heads; this job's "
        f"entries are {sealed} the newest signed head (size {covered})\n"
    )
    return 0 if all(valid for _, _, valid in found.receipts) else 1
