"""Fixtures for the query-layer tests: real DuckDB partitions, federated runs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest

import federation.query.local as local
from federation.query import bind_query, compute_local, finalize, parse_query
from federation.query.bind import BoundQuery
from federation.query.formulation import Plan, Tier
from federation.schema import Column, ColumnType, DatasetSchema
from federation.table import ResultTable

ARROW_TYPES = {
    ColumnType.INTEGER: pa.int64(),
    ColumnType.DOUBLE: pa.float64(),
    ColumnType.CATEGORICAL: pa.string(),
    ColumnType.TEXT: pa.string(),
}

Partition = Mapping[str, Sequence[Any]]


def arrow_table(schema: DatasetSchema, data: Partition) -> pa.Table:
    """A pyarrow table with the schema's declared types (missing columns all NULL)."""
    n = len(next(iter(data.values()))) if data else 0
    return pa.table(
        {
            c.name: pa.array(list(data.get(c.name, [None] * n)), type=ARROW_TYPES[c.type])
            for c in schema.columns
        }
    )


def run_federated(
    sql: str, schema: DatasetSchema, partitions: Sequence[Partition]
) -> tuple[ResultTable, list[np.ndarray]]:
    """Run ``sql`` over each partition as a separate node; sum mod 2**64; finalize."""
    bound = bind_query(parse_query(sql), schema)
    con = duckdb.connect()
    vectors = []
    for i, part in enumerate(partitions):
        con.register(f"node{i}", arrow_table(schema, part))
        vectors.append(compute_local(bound, con, f'"node{i}"'))
    total = np.zeros(bound.vector_length, dtype=np.uint64)
    for v in vectors:
        total += v  # wraps mod 2**64
    return finalize(bound, total), vectors


@pytest.fixture
def schema() -> DatasetSchema:
    """A small dataset with one column of every type (and a bounded double)."""
    return DatasetSchema(
        "patients",
        (
            Column("sex", ColumnType.CATEGORICAL, domain=("F", "M")),
            Column("site", ColumnType.CATEGORICAL, domain=("north", "south", "east")),
            Column("age", ColumnType.INTEGER),
            Column("weight", ColumnType.DOUBLE),
            Column("score", ColumnType.DOUBLE, bounds=(-100.0, 100.0)),
            Column("note", ColumnType.TEXT),
        ),
    )


@pytest.fixture
def federated() -> Callable[..., ResultTable]:
    """``federated(sql, schema, partitions)`` -> the released table."""

    def run(sql: str, schema: DatasetSchema, partitions: Sequence[Partition]) -> ResultTable:
        return run_federated(sql, schema, partitions)[0]

    return run


@pytest.fixture
def tried(monkeypatch: pytest.MonkeyPatch) -> list[tuple[Tier, ...]]:
    """The tiers of every local query compute_local runs, in order."""
    calls: list[tuple[Tier, ...]] = []
    build = local.build_plan

    def recording(
        bound: BoundQuery, tiers: tuple[Tier, ...], offsets: Mapping[str, int] | None = None
    ) -> Plan:
        calls.append(tiers)
        return build(bound, tiers, offsets)

    monkeypatch.setattr(local, "build_plan", recording)
    return calls
