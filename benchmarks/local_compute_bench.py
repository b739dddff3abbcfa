"""Node-local computation: ``compute_local`` against plain DuckDB on the same data.

    python benchmarks/local_compute_bench.py [--rows 1000000] [--groups 10] [--repeat 15]

Writes one Parquet file with DuckDB (a categorical ``g``, a double ``x`` ~ N(50, 10), a
double ``h`` near 1e7 varying by 0.1 and an integer ``y`` uniform in [0, 1000)) and
reads it through a view that casts every column to its declared type, as a node does.
For each case it times, on one DuckDB thread:

* ``compute_local``: the whole node-local step (exact per-group integers, the uint64
  vector) for ``SELECT [g,] COUNT(*), AVG(c)[, VAR_SAMP(c)] FROM d [GROUP BY g]``, with
  its default (fastest applicable exact) tiers: "exact";
* the same with every column on the reference tier, the formulation nodes used before
  the fast tiers existed (the same SQL up to its projection lists): "reference";
* the same given the double columns' means, as a node passes them: the variances of a
  double column then run on a CENTERED tier, within a certified 2**-43 of the exact
  value (:mod:`federation.query.centered`): "node";
* the same SELECT run as a plain DuckDB query (floating point, not exact): "plain".

Columns: ``x`` is an unbounded double, ``xb`` the same values declared with bounds
[-1000, 1000], ``h`` the issue's hard data, ``y`` an integer. Timings are the minimum
of ``--repeat`` runs, taken in interleaved rounds (the machine is shared and noisy), in
ms per 10**6 rows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import duckdb
import numpy as np
import pandas as pd

from federation.query import bind_query, compute_local, parse_query
from federation.query.formulation import reference_tiers
from federation.schema import Column, ColumnType, DatasetSchema

CASES = [
    ("double unbounded", "x"),
    ("double bounded", "xb"),
    ("double near 1e7", "h"),
    ("integer", "y"),
]


def make_schema(groups: int) -> DatasetSchema:
    return DatasetSchema(
        "d",
        (
            Column("g", ColumnType.CATEGORICAL, domain=tuple(f"g{i}" for i in range(groups))),
            Column("x", ColumnType.DOUBLE),
            Column("xb", ColumnType.DOUBLE, bounds=(-1000.0, 1000.0)),
            Column("h", ColumnType.DOUBLE),
            Column("y", ColumnType.INTEGER),
        ),
    )


def write_data(path: Path, rows: int, groups: int) -> None:
    gen = np.random.default_rng(1)
    labels = np.array([f"g{i}" for i in range(groups)], dtype=object)
    frame = pd.DataFrame(
        {
            "g": labels[gen.integers(0, groups, rows)],
            "x": gen.normal(50.0, 10.0, rows),
            "h": 1e7 + 0.1 * gen.random(rows),
            "y": gen.integers(0, 1000, rows, dtype=np.int64),
        }
    )
    con = duckdb.connect()
    con.register("frame", frame)
    con.execute(f"COPY (SELECT * FROM frame) TO '{path}' (FORMAT parquet)")
    con.close()


def best_of(funcs: dict[str, Callable[[], object]], repeat: int) -> dict[str, float]:
    """Minimum wall time of each function over ``repeat`` interleaved rounds."""
    for f in funcs.values():
        f()  # warm: file cache, DuckDB metadata
    best = dict.fromkeys(funcs, float("inf"))
    for _ in range(repeat):
        for name, f in funcs.items():
            t = time.perf_counter()
            f()
            best[name] = min(best[name], time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=15)
    args = parser.parse_args()
    schema = make_schema(args.groups)
    with tempfile.TemporaryDirectory(prefix="federation-local-bench-") as tmp:
        path = Path(tmp) / "d.parquet"
        write_data(path, args.rows, args.groups)
        con = duckdb.connect(config={"threads": 1})
        con.execute(
            "CREATE VIEW d AS SELECT CAST(g AS VARCHAR) AS g, CAST(x AS DOUBLE) AS x, "
            "CAST(x AS DOUBLE) AS xb, CAST(h AS DOUBLE) AS h, CAST(y AS BIGINT) AS y "
            f"FROM read_parquet('{path}')"
        )
        scale = 1e3 * 1e6 / args.rows
        print(f"{args.rows:,} rows, {args.groups} groups, 1 DuckDB thread, min of {args.repeat}")
        print(
            f"{'case':<18} {'query':<20} {'grouping':<8} {'reference':>9} {'exact':>7} "
            f"{'node':>6} {'plain':>6} {'ref/plain':>9} {'exact/plain':>11} {'node/plain':>10}"
        )
        row = con.execute("SELECT avg(x), avg(xb), avg(h) FROM d").fetchone()
        assert row is not None
        centers = {"x": row[0], "xb": row[1], "h": row[2]}
        for label, stats, grouping, sql in cases():
            bound = bind_query(parse_query(sql), schema)
            reference = reference_tiers(bound)
            funcs: dict[str, Callable[[], object]] = {
                "reference": lambda b=bound, t=reference: compute_local(b, con, "d", tiers=t),  # type: ignore[misc]
                "exact": lambda b=bound: compute_local(b, con, "d"),  # type: ignore[misc]
                "node": lambda b=bound: compute_local(b, con, "d", centers=centers),  # type: ignore[misc]
                "plain": lambda s=sql: con.execute(s).fetchall(),  # type: ignore[misc]
            }
            best = {k: v * scale for k, v in best_of(funcs, args.repeat).items()}
            ref, exact, node, plain = (best[k] for k in ("reference", "exact", "node", "plain"))
            print(
                f"{label:<18} {stats:<20} {grouping:<8} {ref:9.1f} {exact:7.1f} {node:6.1f}"
                f" {plain:6.1f} {ref / plain:8.2f}x {exact / plain:10.2f}x"
                f" {node / plain:9.2f}x",
                flush=True,
            )


def cases() -> list[tuple[str, str, str, str]]:
    """(case, statistics, grouping, SQL) for every benchmarked query."""
    out = []
    for label, col in CASES:
        for stats in ("COUNT, AVG", "COUNT, AVG, VAR_SAMP"):
            for grouping in ("grouped", "global"):
                aggs = stats.replace("AVG", f"AVG({col})").replace("VAR_SAMP", f"VAR_SAMP({col})")
                aggs = aggs.replace("COUNT", "COUNT(*)")
                sql = f"SELECT {'g, ' if grouping == 'grouped' else ''}{aggs} FROM d"
                out.append(
                    (label, stats, grouping, sql + (" GROUP BY g" if grouping == "grouped" else ""))
                )
    return out


if __name__ == "__main__":
    main()
