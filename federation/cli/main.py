"""``federation``: run coordinators and nodes, query, simulate, demo.

Every subcommand exits 0 on success, 1 on a federation error (printed as
``error [code]: message``) and 2 on bad usage.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import Any

from federation.cli import approvals as approvals_cli
from federation.cli import audit as audit_cli
from federation.cli import pki as pki_cli
from federation.cli.options import add_security_args
from federation.errors import FederationError
from federation.transport.server import DEFAULT_MAX_CALLS

__all__ = ["build_parser", "main"]

DEFAULT_COORDINATOR = os.environ.get("FEDERATION_COORDINATOR", "127.0.0.1:50051")


def _add_coordinator_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--coordinator",
        "-c",
        default=DEFAULT_COORDINATOR,
        metavar="HOST:PORT",
        help="coordinator address (default: $FEDERATION_COORDINATOR or %(default)s)",
    )
    add_security_args(p, "this analyst's")


def _add_dp_args(query: argparse.ArgumentParser, sub: Any) -> None:
    """``query --epsilon/--delta/--analyst`` and the ``budget`` command."""
    query.add_argument(
        "--epsilon", type=float, default=None, help="run with differential privacy (epsilon > 0)"
    )
    query.add_argument("--delta", type=float, default=1e-6, help="DP delta (%(default)s)")
    query.add_argument(
        "--analyst", default="anonymous", help="whose DP budget pays (self-declared until mTLS)"
    )
    audit_cli.add_parser(sub)

    budget = sub.add_parser("budget", help="show what is left of a DP budget on a dataset")
    budget.add_argument("dataset")
    _add_coordinator_arg(budget)
    budget.add_argument("--analyst", default="anonymous", help="whose budget (%(default)s)")


def _add_coordinator_serve(sub: Any) -> None:
    """``coordinator serve`` and its options."""
    coord = sub.add_parser("coordinator", help="run the coordinator")
    coord_sub = coord.add_subparsers(dest="action", required=True, metavar="ACTION")
    serve = coord_sub.add_parser("serve", help="serve analysts and nodes")
    serve.add_argument("--host", default="0.0.0.0", help="interface to listen on (%(default)s)")  # noqa: S104
    serve.add_argument("--port", type=int, default=50051, help="port (%(default)s)")
    serve.add_argument(
        "--db", default="federation-coordinator.db", help="SQLite state file (%(default)s)"
    )
    serve.add_argument("--round-timeout", type=float, default=60.0, help="seconds per round")
    serve.add_argument("--min-nodes", type=int, default=3, help="fewest nodes per result")
    serve.add_argument(
        "--dropout-tolerance",
        type=float,
        default=0.4,
        help="fraction of each neighbourhood that may drop out mid-job (%(default)s, max 0.45)",
    )
    serve.add_argument("--heartbeat", type=float, default=5.0, help="node heartbeat seconds")
    add_security_args(serve, "the coordinator's")
    serve.add_argument(
        "--crl",
        metavar="FILE",
        help="the CA's revocation list (crl.pem in the PKI directory; reread when it "
        "changes): revoked certificates are refused",
    )
    serve.add_argument(
        "--rate",
        type=float,
        default=50.0,
        help="calls per second each identity may make, sustained (%(default)s)",
    )
    serve.add_argument(
        "--max-calls",
        type=int,
        default=DEFAULT_MAX_CALLS,
        help="calls served at once; every connected node holds one, analysts share the "
        "rest (%(default)s)",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser for every subcommand."""
    parser = argparse.ArgumentParser(
        prog="federation",
        description="Aggregate queries over data that never leaves its nodes.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="run a local coordinator + 3 nodes on example data")
    demo.add_argument("--examples", metavar="DIR", help="the examples/ directory to use")

    _add_coordinator_serve(sub)

    node = sub.add_parser("node", help="run a node agent; decide tasks awaiting approval")
    node_sub = node.add_subparsers(dest="action", required=True, metavar="ACTION")
    nserve = node_sub.add_parser("serve", help="serve the datasets of a node config")
    nserve.add_argument("--config", required=True, metavar="NODE.toml", help="node config file")
    nserve.add_argument(  # fault injection for `federation simulate`; not for deployments
        "--fault",
        choices=["before_keys", "after_keys", "after_shares", "after_upload"],
        help=argparse.SUPPRESS,
    )
    approvals_cli.add_parsers(node_sub)

    ds = sub.add_parser("datasets", help="list the directory of datasets")
    _add_coordinator_arg(ds)
    ds.add_argument("--format", choices=["table", "json"], default="table")

    nodes = sub.add_parser("nodes", help="list known nodes and their liveness")
    _add_coordinator_arg(nodes)
    nodes.add_argument(
        "--forget",
        metavar="NAME",
        help="remove this offline node from the directory instead (admin credentials)",
    )

    query = sub.add_parser("query", help="run an aggregate SQL query")
    query.add_argument("sql", help='e.g. "SELECT sex, AVG(age) FROM patients GROUP BY sex"')
    _add_coordinator_arg(query)
    query.add_argument(
        "--protocol",
        default="secagg",
        choices=["secagg", "paillier", "ckks"],
        help="secure aggregation (default) or homomorphic encryption under a fresh key",
    )
    query.add_argument("--format", choices=["table", "csv", "json"], default="table")
    query.add_argument("--timeout", type=float, default=None, help="seconds to wait")
    query.add_argument("--quiet", "-q", action="store_true", help="no progress on stderr")
    _add_dp_args(query, sub)

    job = sub.add_parser("job", help="show a recorded job and its result")
    job.add_argument("job_id")
    _add_coordinator_arg(job)
    job.add_argument("--format", choices=["table", "csv", "json"], default="table")

    sim = sub.add_parser("simulate", help="simulate a federation on synthetic data")
    sim.add_argument("--nodes", type=int, default=5, help="number of nodes (%(default)s)")
    sim.add_argument("--rows", type=int, default=100_000, help="rows per node (%(default)s)")
    sim.add_argument("--groups", type=int, default=4, help="categories of the group column")
    sim.add_argument(
        "--dropout",
        type=float,
        default=0.0,
        metavar="F",
        help="fraction of nodes that die mid-protocol (%(default)s)",
    )
    sim.add_argument("--seed", type=int, default=0, help="seed for the synthetic data")
    sim.add_argument("--sql", action="append", help="query to run (repeatable)")
    sim.add_argument(
        "--insecure", action="store_true", help="plaintext gRPC instead of its own mutual TLS"
    )
    sim.add_argument(
        "--isolation",
        choices=["thread", "process"],
        default="process",
        help="run node agents as threads of this process or as separate processes (%(default)s)",
    )
    pki_cli.add_parser(sub)
    return parser


def _configure_logging(verbosity: int) -> None:
    level = logging.WARNING if verbosity == 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``federation`` command."""
    from federation.cli import commands

    args = build_parser().parse_args(argv)
    _configure_logging(args.verbose)
    handlers = {
        "demo": commands.demo,
        "coordinator": commands.coordinator_serve,
        "node": lambda a: commands.node_serve(a) if a.action == "serve" else approvals_cli.run(a),
        "datasets": commands.datasets,
        "nodes": commands.nodes,
        "query": commands.query,
        "budget": commands.budget,
        "audit": audit_cli.run,
        "pki": pki_cli.run,
        "job": commands.job,
        "simulate": commands.simulate,
    }
    try:
        return handlers[args.command](args)
    except FederationError as exc:
        sys.stderr.write(f"error [{exc.code}]: {exc.message}\n")
        if exc.job_id:
            sys.stderr.write(f"job id: {exc.job_id}\n")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
