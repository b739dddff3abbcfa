"""``federation demo``: a coordinator and three example hospitals on this machine.

Starts a real coordinator (gRPC on loopback, SQLite state in a temporary
directory) and the three node agents of ``examples/nodes/*.toml``, each reading
its own CSV. Runs a few queries, and, because this demo happens to have all
three files on one disk, checks each answer against pandas on the pooled data.
"""

from __future__ import annotations

import dataclasses
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from federation.errors import CoordinatorUnavailableError, FederationError
from federation.render import render_table
from federation.schema import DatasetSchema
from federation.sdk.client import Client

__all__ = ["DEMO_QUERIES", "run_demo"]

Print = Callable[[str], None]

DEMO_QUERIES = [
    "SELECT COUNT(*) AS patients, AVG(age) AS mean_age, STDDEV_SAMP(age) AS sd_age FROM patients",
    "SELECT sex, COUNT(*) AS n, AVG(bmi) AS mean_bmi, VAR_SAMP(bmi) AS var_bmi "
    "FROM patients GROUP BY sex",
    "SELECT region, smoker, COUNT(*) AS n, AVG(systolic_bp) AS mean_bp "
    "FROM patients WHERE age >= 50 GROUP BY region, smoker",
    "SELECT COUNT(cholesterol) AS measured, AVG(cholesterol) AS mean_chol, "
    "VAR_POP(cholesterol) AS var_chol FROM patients WHERE smoker = 'yes'",
]
REFUSED = "SELECT * FROM patients"
HOMOMORPHIC = [
    ("paillier", "Paillier sum under this analyst's 2048-bit key"),
    ("ckks", "CKKS sum under this analyst's key"),
]


_SQL_TYPES = {"integer": "BIGINT", "double": "DOUBLE", "categorical": "VARCHAR", "text": "VARCHAR"}


def _pooled_check(
    examples: Path, schema: DatasetSchema, sql: str, federated: Sequence[tuple[object, ...]]
) -> str:
    """Run the same SQL with DuckDB over the pooled CSVs (typed as declared) and compare."""
    import duckdb

    con = duckdb.connect()
    try:
        files = sorted(str(p) for p in (examples / "data").glob("hospital_*.csv"))
        cols = ", ".join(
            f'CAST("{c.name}" AS {_SQL_TYPES[c.type.value]}) AS "{c.name}"' for c in schema.columns
        )
        con.execute(
            f"CREATE VIEW patients AS SELECT {cols} "
            f"FROM read_csv({files!r}, header=true, all_varchar=true)"
        )
        pooled = con.execute(sql).fetchall()
    finally:
        con.close()
    if len(pooled) != len(federated):
        return f"MISMATCH: {len(pooled)} pooled rows vs {len(federated)} federated rows"

    def order(row: tuple[object, ...]) -> tuple[str, ...]:
        return tuple(str(v) for v in row if isinstance(v, str) or v is None)

    worst = 0.0
    for prow, frow in zip(sorted(pooled, key=order), sorted(federated, key=order), strict=True):
        for p, f in zip(prow, frow, strict=True):
            if isinstance(p, (int, float)) and isinstance(f, (int, float)):
                worst = max(worst, abs(float(p) - float(f)) / max(abs(float(p)), 1e-300))
            elif p != f:
                return f"MISMATCH in a group label: {p!r} vs {f!r}"
    verdict = "matches" if worst < 1e-12 else "DIFFERS from"
    return f"{verdict} DuckDB on the pooled CSVs (max relative difference {worst:.1e})"


def run_demo(examples: Path, out: Print) -> int:
    """Run the demo; returns a process exit code."""
    from coordinator.jobs import JobSettings
    from coordinator.service import Coordinator, CoordinatorSettings
    from federation.pki import Role
    from federation.simulation import LocalPKI
    from nodes.agent import NodeAgent
    from nodes.config import load_node_config

    configs = [load_node_config(p) for p in sorted((examples / "nodes").glob("*.toml"))]
    with tempfile.TemporaryDirectory(prefix="federation-demo-") as tmp:
        # The demo's own CA: every channel is mutual TLS, as in a deployment.
        pki = LocalPKI(Path(tmp) / "pki", insecure=False)
        coordinator = Coordinator(
            CoordinatorSettings(
                database=Path(tmp) / "coordinator.db",
                heartbeat_interval=1.0,
                jobs=JobSettings(round_timeout=15.0),
            )
        )
        server = coordinator.serve("127.0.0.1", 0, security=pki.coordinator())
        agents = []
        try:
            out(f"coordinator listening on {server.address} (mutual TLS)")
            for config in configs:
                agent = NodeAgent(
                    dataclasses.replace(
                        config,
                        coordinator=server.address,
                        credentials=pki.path(Role.NODE, config.name),
                        insecure=False,
                        server_name=None,
                    )
                )
                agent.start()
                agents.append(agent)
                sources = ", ".join(str(d.source.name) for d in config.datasets)
                out(f"node {config.name} dialed out; it serves {sources} (rows stay there)")
            for agent in agents:
                if not agent.registered.wait(20):
                    raise CoordinatorUnavailableError(f"{agent.config.name} did not register")
            with Client(server.address, security=pki.client("demo-analyst")) as client:
                out("\nThe directory (metadata only):")
                for info in client.datasets():
                    cols = ", ".join(f"{c.name}:{c.type.value}" for c in info.schema.columns)
                    out(f"  {info.schema.name} on {info.online_node_count} nodes: {cols}")
                for sql in DEMO_QUERIES:
                    out(f"\n> {sql}")
                    started = time.perf_counter()
                    result = client.query(sql)
                    out(render_table(result.table))
                    out(
                        f"  secure aggregation over {result.node_count} nodes in "
                        f"{time.perf_counter() - started:.2f} s; "
                        + _pooled_check(examples, configs[0].datasets[0].schema, sql, result.rows)
                    )
                sql = DEMO_QUERIES[1]
                for protocol, how in HOMOMORPHIC:
                    out(f"\n> {sql}   [protocol={protocol}]")
                    started = time.perf_counter()
                    result = client.query(sql, protocol=protocol)
                    out(render_table(result.table))
                    out(
                        f"  {how} over {result.node_count} nodes in "
                        f"{time.perf_counter() - started:.2f} s, decrypted here; "
                        + _pooled_check(examples, configs[0].datasets[0].schema, sql, result.rows)
                    )
                out(f"\n> {REFUSED}")
                try:
                    client.query(REFUSED)
                    out("  unexpectedly accepted")
                    return 1
                except FederationError as exc:
                    out(f"  refused [{exc.code}]: {exc.message}")
            out(
                "\nThe coordinator saw only masked vectors, ciphertexts and the secagg "
                "aggregates.\n"
                "Every channel was mutual TLS with certificates from the demo's own CA, and "
                "every node checked the coordinator's audit log on every task.\n"
                "Run it yourself: issue identities with `federation pki`, then "
                "`federation coordinator serve`, `federation node serve --config "
                "examples/nodes/hospital_a.toml` (and b, c) and `federation query`; the "
                'README\'s "Node operators" section has the commands.'
            )
            return 0
        finally:
            for agent in agents:
                agent.stop()
            coordinator.close()
