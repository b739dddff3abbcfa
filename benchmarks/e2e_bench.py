"""End to end: a grouped query over 10 nodes x 10^6 rows through real gRPC,
against DuckDB running the same query on the pooled data, in the same run.

    python benchmarks/e2e_bench.py [--nodes 10] [--rows 1000000] [--groups 10] [--repeat 5]
                                   [--isolation process|thread]

Both sides read the same Parquet files: each node its own, the pooled baseline
all of them. Every node agent is its own process (``--isolation process``, as in a
deployment) with a one-thread DuckDB; the pooled query uses DuckDB's default
threads. All of it shares this machine's cores. Prints medians and the ratio
federated / pooled (target: under 3x).
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import duckdb

import federation as fed
from federation.cli.synthetic import synthetic_partitions

SQL = "SELECT g, COUNT(*), AVG(x), VAR_SAMP(x) FROM synthetic GROUP BY g"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--nodes", type=int, default=10)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--isolation", choices=["process", "thread"], default="process")
    args = parser.parse_args()

    print(
        f"machine: {os.cpu_count()} cores; {args.nodes} nodes x {args.rows:,} rows, "
        f"{args.groups} groups"
    )
    t0 = time.perf_counter()
    parts = synthetic_partitions(args.nodes, args.rows, args.groups, seed=1)
    print(f"generated data in {time.perf_counter() - t0:.1f} s")

    with (
        tempfile.TemporaryDirectory(prefix="federation-bench-") as tmp,
        fed.simulate(
            {"synthetic": parts}, workdir=tmp, round_timeout=120.0, isolation=args.isolation
        ) as client,
    ):
        files = sorted(str(p) for p in Path(tmp).glob("node-*/synthetic.parquet"))
        pooled_con = duckdb.connect()
        pooled_con.execute(f"CREATE VIEW synthetic AS SELECT * FROM read_parquet({files!r})")
        pooled_sql = SQL + " ORDER BY g"

        def pooled() -> list[tuple[object, ...]]:
            return pooled_con.execute(pooled_sql).fetchall()

        def federated() -> list[tuple[object, ...]]:
            return client.query(SQL).rows

        pooled()  # warm both: file cache, DuckDB metadata, gRPC channels
        fed_rows = federated()
        t_pooled, t_fed = [], []
        for _ in range(args.repeat):
            t = time.perf_counter()
            pooled_rows = pooled()
            t_pooled.append(time.perf_counter() - t)
            t = time.perf_counter()
            fed_rows = federated()
            t_fed.append(time.perf_counter() - t)
        worst = 0.0
        for p, f in zip(pooled_rows, fed_rows, strict=True):
            if p[:2] != f[:2]:
                raise SystemExit("group labels and counts disagree with the pooled query")
            for a, b in zip(p[2:], f[2:], strict=True):
                worst = max(worst, abs(float(a) - float(b)) / abs(float(b)))  # type: ignore[arg-type]
        mp, mf = statistics.median(t_pooled), statistics.median(t_fed)
        print(f"pooled DuckDB      median {mp * 1e3:8.1f} ms")
        print(f"federated (secagg) median {mf * 1e3:8.1f} ms")
        print(f"ratio federated / pooled: {mf / mp:.2f}x  (target < 3x)")
        print(f"max relative difference of AVG/VAR_SAMP vs pooled DuckDB: {worst:.1e}")


if __name__ == "__main__":
    main()
