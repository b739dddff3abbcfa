"""``federation node approvals | approve | deny``: the operator's side of manual approval.

They read and write the node's approval book (``approvals.sqlite3`` in the node's
``state_dir``) directly, beside the running agent: a data holder opens no port for them.
"""

from __future__ import annotations

import argparse
import datetime
import getpass
import json
import sys
from typing import TYPE_CHECKING, Any

from federation.errors import ConfigError

if TYPE_CHECKING:
    from nodes.approvals import ApprovalBook, ApprovalRequest

__all__ = ["add_parsers", "run"]


def add_parsers(node_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register ``node approvals``, ``node approve`` and ``node deny``."""
    listing = node_sub.add_parser(
        "approvals", help="list tasks awaiting approval, with the exact computation each asks"
    )
    listing.add_argument("--config", required=True, metavar="NODE.toml", help="node config file")
    listing.add_argument("--all", action="store_true", help="also decided and expired requests")
    listing.add_argument("--format", choices=["table", "json"], default="table")
    approve = node_sub.add_parser("approve", help="approve a pending task")
    approve.add_argument("request_id", metavar="ID")
    approve.add_argument("--config", required=True, metavar="NODE.toml", help="node config file")
    approve.add_argument("--by", default=None, help="who decides (default: this OS user)")
    deny = node_sub.add_parser("deny", help="deny a pending task; the analyst sees the reason")
    deny.add_argument("request_id", metavar="ID")
    deny.add_argument("--config", required=True, metavar="NODE.toml", help="node config file")
    deny.add_argument("--reason", required=True, help="why (sent to the analyst)")
    deny.add_argument("--by", default=None, help="who decides (default: this OS user)")


def run(args: argparse.Namespace) -> int:
    """Run one of the approval commands."""
    book = _book(args.config)
    by = args.by if getattr(args, "by", None) else getpass.getuser()
    if args.action == "approve":
        done = book.approve(args.request_id, by=by)
        sys.stdout.write(f"approved {done.request_id} (job {done.job_id})\n")
        return 0
    if args.action == "deny":
        done = book.deny(args.request_id, reason=args.reason, by=by)
        sys.stdout.write(f"denied {done.request_id} (job {done.job_id}): {done.reason}\n")
        return 0
    from nodes.approvals import ApprovalStatus

    items = book.requests() if args.all else book.pending()
    if args.format == "json":
        sys.stdout.write(json.dumps([_as_dict(r) for r in items], indent=2) + "\n")
        return 0
    if not items:
        sys.stdout.write("no pending approval requests\n" if not args.all else "no requests\n")
        return 0
    for r in items:
        line = (
            f"{r.request_id}  {r.status.value:<8}  job {r.job_id}  dataset {r.dataset}  "
            f"analyst {r.analyst}  protocol {r.protocol}"
        )
        if r.epsilon:
            line += f"  epsilon {r.epsilon:g}"
        sys.stdout.write(line + "\n")
        sys.stdout.write(f"    requested {_when(r.requested_at)}, expires {_when(r.expires_at)}\n")
        sys.stdout.write(f"    query:       {r.sql}\n")
        sys.stdout.write(f"    computation: {r.computation}\n")
        if r.status is not ApprovalStatus.PENDING and r.decided_at is not None:
            who = f" by {r.decided_by}" if r.decided_by else ""
            why = f": {r.reason}" if r.reason else ""
            sys.stdout.write(f"    {r.status.value} {_when(r.decided_at)}{who}{why}\n")
    return 0


def _book(config_path: str) -> ApprovalBook:
    from nodes.approvals import APPROVALS_FILE, ApprovalBook
    from nodes.config import load_node_config

    config = load_node_config(config_path)
    if config.state_dir is None:
        raise ConfigError(
            f"node {config.name!r} has no state_dir, so it keeps no approval requests "
            "(a dataset with manual approval needs one)"
        )
    return ApprovalBook(config.state_dir / APPROVALS_FILE)


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts, tz=datetime.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _as_dict(r: ApprovalRequest) -> dict[str, Any]:
    return {
        "request_id": r.request_id,
        "status": r.status.value,
        "job_id": r.job_id,
        "dataset": r.dataset,
        "analyst": r.analyst,
        "protocol": r.protocol,
        "epsilon": r.epsilon,
        "sql": r.sql,
        "computation": r.computation,
        "requested_at": r.requested_at,
        "expires_at": r.expires_at,
        "decided_at": r.decided_at,
        "decided_by": r.decided_by,
        "reason": r.reason,
    }
