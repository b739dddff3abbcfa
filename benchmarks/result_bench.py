"""Benchmark of large result tables through the real coordinator gRPC path.

Runs a wide cross-tabulation (``GROUP BY a, b`` over two categorical columns of
``--labels`` values each, so ``labels**2`` result rows of 5 columns, almost all of
them zero cells) on a local federation (``fed.simulate``: the coordinator in this
process, node agents in their own processes, talking gRPC on loopback) and times,
in the same run:

- end to end: ``client.query`` as the analyst sees it, and rows/s;
- the coordinator's share: finalization of the summed vector into the table
  (``finalize``), recording it in the store, encoding it into column chunks;
- the analyst's share: decoding the chunks into the table, then ``to_pandas()``;
- ``client.job(job_id)`` (GetJob: the store's copy, streamed again);
- the rest (SecAgg+ itself, node computation, gRPC) as the remainder.

Baselines measured in the same run on the same data: a pandas ``groupby`` of the
pooled data with every category combination (what a single trusted party would run),
and a pyarrow IPC round trip (serialize + read back) of the same result table.

Usage::

    python benchmarks/result_bench.py            # 450 x 450 = 202,500 rows, 1.01e6 cells
    python benchmarks/result_bench.py --quick    # 200 x 200 = 40,000 rows
    python benchmarks/result_bench.py --labels 800 --rows 500
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import io
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pandas as pd

import federation as fed

SQL = "SELECT a, b, COUNT(*) AS n, SUM(k) AS s, AVG(x) AS m FROM wide GROUP BY a, b"


class Timer:
    """Seconds spent in the wrapped callables, by name (summed over calls)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    def add(self, name: str, seconds: float) -> None:
        self.seconds[name] = self.seconds.get(name, 0.0) + seconds

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - start)

        return timed

    def wrap_generator(self, name: str, fn: Callable[..., Iterator[Any]]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Iterator[Any]:
            it = fn(*args, **kwargs)
            while True:
                start = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    self.add(name, time.perf_counter() - start)
                yield item

        return timed


@contextlib.contextmanager
def instrumented(timer: Timer) -> Iterator[None]:
    """Wrap the phases of the result path (whatever this checkout calls them)."""
    import coordinator.jobs
    import coordinator.store
    import federation.transport.analyst_client as client_mod
    import federation.transport.serde as serde
    import federation.transport.server as server

    patches: list[tuple[Any, str, Any]] = []

    def patch(owner: Any, attr: str, new: Callable[[Any], Any]) -> None:
        if hasattr(owner, attr):
            old = getattr(owner, attr)
            patches.append((owner, attr, old))
            setattr(owner, attr, new(old))

    patch(coordinator.jobs, "finalize", lambda f: timer.wrap("finalize", f))
    patch(coordinator.store.Store, "record_job_succeeded", lambda f: timer.wrap("store", f))
    patch(server, "result_chunks", lambda f: timer.wrap_generator("encode", f))
    patch(server, "rows_to_proto", lambda f: timer.wrap("encode", f))  # the per-cell format
    assembler = getattr(serde, "ResultAssembler", None)
    if assembler is not None:
        patch(assembler, "add", lambda f: timer.wrap("decode", f))
        patch(assembler, "table", lambda f: timer.wrap("decode", f))
    patch(client_mod, "rows_from_proto", lambda f: timer.wrap_generator("decode", f))
    try:
        yield
    finally:
        for owner, attr, old in reversed(patches):
            setattr(owner, attr, old)


def make_data(labels: int, nodes: int, rows: int) -> tuple[fed.DatasetSchema, list[pd.DataFrame]]:
    names = tuple(f"v{i:04d}" for i in range(labels))
    schema = fed.DatasetSchema(
        "wide",
        (
            fed.Column("a", fed.ColumnType.CATEGORICAL, domain=names),
            fed.Column("b", fed.ColumnType.CATEGORICAL, domain=names),
            fed.Column("k", fed.ColumnType.INTEGER),
            fed.Column("x", fed.ColumnType.DOUBLE, bounds=(0.0, 100.0)),
        ),
    )
    gen = np.random.default_rng(7)
    parts = [
        pd.DataFrame(
            {
                "a": gen.choice(names, rows).astype(object),
                "b": gen.choice(names, rows).astype(object),
                "k": gen.integers(0, 1000, rows, dtype=np.int64),
                "x": gen.random(rows) * 100,
            }
        )
        for _ in range(nodes)
    ]
    return schema, parts


def pandas_baseline(schema: fed.DatasetSchema, parts: list[pd.DataFrame]) -> float:
    """Seconds for a pandas groupby of the pooled data over every category combination."""
    start = time.perf_counter()
    pooled = pd.concat(parts, ignore_index=True)
    domain = list(schema.column("a").domain)
    pooled["a"] = pd.Categorical(pooled["a"], categories=domain)
    pooled["b"] = pd.Categorical(pooled["b"], categories=domain)
    out = pooled.groupby(["a", "b"], observed=False).agg(
        n=("k", "size"), s=("k", "sum"), m=("x", "mean")
    )
    assert len(out) == len(domain) ** 2
    return time.perf_counter() - start


def arrow_baseline(frame: pd.DataFrame) -> float | None:
    """Seconds for a pyarrow IPC round trip (serialize + read back) of the result."""
    try:
        import pyarrow as pa
    except ImportError:
        return None
    start = time.perf_counter()
    table = pa.Table.from_pandas(frame, preserve_index=False)
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    back = pa.ipc.open_stream(sink.getvalue()).read_all().to_pandas()
    assert len(back) == len(frame)
    return time.perf_counter() - start


def run(labels: int, nodes: int, rows: int) -> dict[str, Any]:
    schema, parts = make_data(labels, nodes, rows)
    timer = Timer()
    with fed.simulate({"wide": parts}, schemas={"wide": schema}, isolation="process") as client:
        client.query("SELECT COUNT(*) FROM wide")  # warm up every connection
        with instrumented(timer):
            start = time.perf_counter()
            result = client.query(SQL)
            e2e = time.perf_counter() - start
        start = time.perf_counter()
        frame = result.to_pandas()
        to_pandas = time.perf_counter() - start
        start = time.perf_counter()
        try:
            record = client.job(result.job_id)
            assert record.result is not None
            assert record.result.rows == result.table.rows
            get_job: float | str = round(time.perf_counter() - start, 3)
        except fed.FederationError as exc:
            get_job = f"failed: {exc.message[:80]}"
    n = len(result.rows)
    assert n == labels**2
    phases = {k: round(v, 3) for k, v in timer.seconds.items()}
    measured = sum(timer.seconds.values())
    pandas_s = pandas_baseline(schema, parts)
    arrow_s = arrow_baseline(frame)
    wire = timer.seconds.get("encode", 0.0) + timer.seconds.get("decode", 0.0)
    return {
        "result_rows": n,
        "cells": n * len(result.columns),
        "nodes": nodes,
        "rows_per_node": rows,
        "end_to_end_s": round(e2e, 3),
        "rows_per_s": round(n / e2e),
        **{f"{k}_s": v for k, v in phases.items()},
        "protocol_and_rest_s": round(e2e - measured, 3),
        "to_pandas_s": round(to_pandas, 3),
        "get_job_s": get_job,
        "baseline_pandas_groupby_s": round(pandas_s, 3),
        "baseline_arrow_ipc_roundtrip_s": None if arrow_s is None else round(arrow_s, 3),
        "ratio_end_to_end_vs_pandas": round(e2e / pandas_s, 1),
        "ratio_encode_decode_vs_arrow": None if arrow_s is None else round(wire / arrow_s, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 x 200 labels")
    parser.add_argument("--labels", type=int, help="labels per GROUP BY column (default 450)")
    parser.add_argument("--nodes", type=int, default=3)
    parser.add_argument("--rows", type=int, default=2000, help="rows per node")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()
    labels = args.labels or (200 if args.quick else 450)
    row = run(labels, args.nodes, args.rows)
    if args.json:
        print(json.dumps(row))
        return
    width = max(map(len, row))
    for key, value in row.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()
