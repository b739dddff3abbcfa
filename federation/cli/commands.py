"""Implementations of the ``federation`` subcommands."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path

from federation.cli.options import security_from_args
from federation.dp.report import ANONYMOUS
from federation.errors import ConfigError
from federation.messages import JobProgress, JobStatus
from federation.render import render_csv, render_json, render_table
from federation.sdk.client import Client
from federation.sdk.result import QueryResult
from federation.table import ResultTable

__all__ = [
    "coordinator_serve",
    "datasets",
    "demo",
    "job",
    "node_serve",
    "nodes",
    "query",
    "simulate",
]


def _out(text: str = "") -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def _err(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def _progress(event: JobProgress) -> None:
    _err(f"  {event.stage.replace('_', ' ')}: {event.done}/{event.total} node(s)")


def _wait_for_signal(done: threading.Event | None = None) -> None:
    """Block until SIGINT/SIGTERM (or until ``done`` is set)."""
    stop = done or threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.wait(0.5):
        pass


def _connect(args: argparse.Namespace, analyst: str = ANONYMOUS) -> Client:
    """An analyst connection from ``--coordinator``, ``--credentials`` / ``--insecure``."""
    security = security_from_args(args, "this analyst client")
    return Client(args.coordinator, security=security, analyst=analyst)


def _print_table(table: ResultTable, fmt: str, **meta: object) -> None:
    if fmt == "csv":
        sys.stdout.write(render_csv(table))
    elif fmt == "json":
        _out(render_json(table, **meta))
    else:
        _out(render_table(table))


# --- services -------------------------------------------------------------------


def coordinator_serve(args: argparse.Namespace) -> int:
    """Run a coordinator until interrupted."""
    from coordinator.jobs import JobSettings
    from coordinator.service import Coordinator, CoordinatorSettings

    settings = CoordinatorSettings(
        database=args.db,
        heartbeat_interval=args.heartbeat,
        jobs=JobSettings(
            round_timeout=args.round_timeout,
            min_nodes=args.min_nodes,
            dropout_tolerance=args.dropout_tolerance,
        ),
    )
    from federation.transport.access import RateLimit

    security = security_from_args(args, "the coordinator", crl=args.crl)
    if security.secure and args.crl is None:
        _err("warning: no --crl: revoked certificates will not be refused")
    coordinator = Coordinator(settings)
    server = coordinator.serve(
        args.host,
        args.port,
        security=security,
        rate=RateLimit(args.rate, args.rate * 4),
        max_calls=args.max_calls,
    )
    how = "mutual TLS" if security.secure else "PLAINTEXT"
    _err(f"coordinator listening on {server.address} ({how}; state: {args.db}); Ctrl-C to stop")
    try:
        _wait_for_signal()
    finally:
        coordinator.close()
    return 0


def node_serve(args: argparse.Namespace) -> int:
    """Run a node agent until interrupted."""
    from nodes.agent import NodeAgent
    from nodes.config import load_node_config
    from nodes.task import DropoutStage

    config = load_node_config(args.config)
    fault = DropoutStage(args.fault) if args.fault else None
    agent = NodeAgent(config, die_at=fault)
    names = ", ".join(d.schema.name for d in config.datasets) or "no datasets"
    _err(f"node {config.name} serving {names}; dialing {config.coordinator}; Ctrl-C to stop")
    agent.start()
    try:
        _wait_for_signal(agent.dead)
    finally:
        agent.stop()
    return 0


# --- analyst commands ------------------------------------------------------------


def datasets(args: argparse.Namespace) -> int:
    """Print the directory."""
    with _connect(args) as client:
        infos = client.datasets()
    if args.format == "json":
        _out(
            json.dumps(
                [
                    {
                        "name": i.schema.name,
                        "nodes": i.node_count,
                        "online": i.online_node_count,
                        "status": i.status.value,
                        "schema": i.schema.to_dict(),
                    }
                    for i in infos
                ],
                indent=2,
            )
        )
        return 0
    if not infos:
        _out("no datasets registered")
    for info in infos:
        _out(
            f"{info.schema.name}  ({info.online_node_count} of {info.node_count} node(s) online"
            f"{', ' + info.status.value if info.status.value != 'ok' else ''})"
        )
        if info.detail:
            _out(f"  ! {info.detail}")
        for c in info.schema.columns:
            extra = ""
            if c.domain:
                extra = " {" + ", ".join(c.domain) + "}"
            elif c.bounds:
                extra = f" [{c.bounds[0]:g}, {c.bounds[1]:g}]"
            _out(f"  {c.name:<20} {c.type.value:<12} {c.classification.value:<12}{extra}")
    return 0


def nodes(args: argparse.Namespace) -> int:
    """Print the known nodes (or, with ``--forget``, remove an offline one)."""
    with _connect(args) as client:
        if args.forget:
            client.forget_node(args.forget)
            _out(f"node {args.forget} removed from the directory")
            return 0
        infos = client.nodes()
    if not infos:
        _out("no nodes registered")
    for n in infos:
        seen = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(n.last_seen))
        state = "online " if n.online else "offline"
        _out(f"{n.name:<24} {state}  last seen {seen}  datasets: {', '.join(n.datasets)}")
    return 0


def query(args: argparse.Namespace) -> int:
    """Run one query and print its result."""
    with _connect(args, args.analyst) as client:
        result = client.query(
            args.sql,
            protocol=args.protocol,
            timeout=args.timeout,
            progress=None if args.quiet else _progress,
            epsilon=args.epsilon,
            delta=args.delta,
        )
    _print_result(result, args.format)
    return 0


def budget(args: argparse.Namespace) -> int:
    """Print what is left of an analyst's DP budget on a dataset."""
    with _connect(args, args.analyst) as client:
        status = client.budget(args.dataset)
    _out(
        f"{status.dataset} · analyst {status.analyst}: epsilon {status.remaining:.6g} left "
        f"of {status.total:.6g} (spent {status.spent:.6g}) at delta={status.delta:g}, "
        f"{status.composition} (rho {status.remaining_rho:.6g} left)"
    )
    return 0


def _print_result(result: QueryResult, fmt: str) -> None:
    _print_table(
        result.table,
        fmt,
        job_id=result.job_id,
        protocol=result.protocol,
        nodes=result.node_count,
        selected_nodes=result.selected_nodes,
    )
    if fmt == "table":
        _err(
            f"job {result.job_id} · {result.protocol} · {result.node_count} of "
            f"{result.selected_nodes} node(s) · {result.elapsed:.3f} s"
        )
        if result.privacy is not None:
            _err(f"DP: {result.privacy.summary()}")


def job(args: argparse.Namespace) -> int:
    """Show a recorded job."""
    with _connect(args) as client:
        record = client.job(args.job_id)
    _err(
        f"job {record.job_id}: {record.status.value} · {record.protocol.value} · "
        f"dataset {record.dataset or '?'} · {record.contributing_nodes} of "
        f"{record.selected_nodes} node(s)"
    )
    _err(f"sql: {record.sql}")
    if record.error is not None:
        _err(f"error [{record.error.code}]: {record.error.message}")
    if record.result is not None:
        _print_table(record.result, args.format, job_id=record.job_id)
    return 0 if record.status is JobStatus.SUCCEEDED else 1


# --- local federations -------------------------------------------------------------


def _find_examples(explicit: str | None) -> Path:
    candidates = [Path(explicit)] if explicit else []
    candidates += [Path.cwd() / "examples", Path(__file__).resolve().parents[2] / "examples"]
    for path in candidates:
        if (path / "nodes").is_dir():
            return path
    raise ConfigError(
        "cannot find the examples/ directory (with nodes/*.toml); run from a checkout of the "
        "repository or pass --examples DIR"
    )


def demo(args: argparse.Namespace) -> int:
    """A coordinator and the three example hospitals, a few queries, a refusal."""
    from federation.cli.demo import run_demo

    return run_demo(_find_examples(args.examples), _out)


def simulate(args: argparse.Namespace) -> int:
    """Simulate a federation on synthetic data and print results and timings."""
    from federation.cli.synthetic import synthetic_partitions
    from federation.simulation import simulate as run_simulation

    if args.nodes < 2:
        raise ConfigError("--nodes must be at least 2")
    if not 0.0 <= args.dropout < 1.0:
        raise ConfigError("--dropout is a fraction in [0, 1)")
    dropped = round(args.dropout * args.nodes)
    stages = ["after_keys", "after_upload"]
    dropout = {args.nodes - 1 - i: stages[i % 2] for i in range(dropped)}
    t0 = time.perf_counter()
    parts = synthetic_partitions(args.nodes, args.rows, args.groups, args.seed)
    t_data = time.perf_counter() - t0
    _err(f"generated {args.nodes} x {args.rows:,} rows in {t_data:.2f} s")
    if dropout:
        _err("injected dropouts: " + ", ".join(f"node-{i} {s}" for i, s in sorted(dropout.items())))
    sqls = args.sql or [
        "SELECT COUNT(*) AS n, AVG(x) AS mean_x, VAR_SAMP(x) AS var_x, SUM(y) AS sum_y "
        "FROM synthetic",
        "SELECT g, COUNT(*) AS n, AVG(x) AS mean_x, STDDEV_SAMP(x) AS sd_x "
        "FROM synthetic GROUP BY g",
    ]
    t0 = time.perf_counter()
    with (
        tempfile.TemporaryDirectory(prefix="federation-simulate-") as tmp,
        run_simulation(
            {"synthetic": parts},
            dropout=dropout,
            workdir=tmp,
            round_timeout=10.0,
            isolation=args.isolation,
            insecure=args.insecure,
        ) as client,
    ):
        _err(f"federation up at {client.address} in {time.perf_counter() - t0:.2f} s")
        for sql in sqls:
            _out(f"\n> {sql}")
            result = client.query(sql, progress=_progress)
            _out(render_table(result.table))
            _out(
                f"covered {result.node_count} of {result.selected_nodes} node(s) · "
                f"{result.elapsed:.3f} s"
            )
    return 0
