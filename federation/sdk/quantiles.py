"""The analyst's side of quantile queries: drive the refinement rounds, assemble the table.

:mod:`federation.query.quantiles` holds the method (pure); this module runs its
jobs through an ordinary :class:`~federation.sdk.client.Client`: the base query,
then histogram rounds until every order statistic is pinned down. Every job is
an ordinary aggregate job (recorded by the coordinator, checked by every node,
under the protocol the analyst chose).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import TYPE_CHECKING

from federation.errors import (
    PolicyViolationError,
    QueryError,
    UnknownColumnError,
    UnknownDatasetError,
)
from federation.query.quantiles import (
    BUCKETS,
    QuantileQuery,
    RankSearch,
    histogram_sql,
    interpolate,
    ranks,
)
from federation.schema import Classification, Column, ColumnType
from federation.sdk.result import QueryResult
from federation.table import Cell, ColumnKind, ResultTable

if TYPE_CHECKING:
    from federation.sdk.client import Client

__all__ = ["DEFAULT_TOLERANCE", "MAX_ROUNDS", "run_quantile_query"]

DEFAULT_TOLERANCE = 1e-9
"""Relative width at which a double column's search stops (integers end exactly)."""
MAX_ROUNDS = 40
"""A search that has not converged by then is an error (it cannot happen with valid data)."""
PARALLEL_JOBS = 8
"""Histogram jobs of one round in flight at once."""

_INTEGER_RANGE = 2.0**62
_DOUBLE_RANGE = 2.0**41

Group = tuple[Cell, ...]
RunQuery = Callable[[str], QueryResult]


def _column(client: Client, dataset: str, name: str) -> Column:
    for info in client.datasets():
        if info.schema.name.lower() == dataset.lower():
            for column in info.schema.columns:
                if column.name.lower() == name.lower():
                    if column.type not in (ColumnType.INTEGER, ColumnType.DOUBLE):
                        raise QueryError(
                            f"a quantile needs a numeric column; {column.name!r} is "
                            f"{column.type.value}"
                        )
                    return column
            raise UnknownColumnError(f"dataset {dataset!r} has no column {name!r}")
    raise UnknownDatasetError(f"no dataset named {dataset!r} in the directory")


def _start(column: Column) -> tuple[float, float]:
    if column.bounds is not None:
        lo, hi = float(column.bounds[0]), float(column.bounds[1])
    elif column.type is ColumnType.INTEGER:
        lo, hi = -_INTEGER_RANGE, _INTEGER_RANGE
    else:
        lo, hi = -_DOUBLE_RANGE, _DOUBLE_RANGE
    return lo, math.nextafter(hi, math.inf)  # [lo, hi] as a half-open interval


def _histograms(result: QueryResult, groups: int) -> dict[Group, list[int]]:
    """Bucket counts per group from a round's table (group columns, bucket, count)."""
    counts: dict[Group, list[int]] = defaultdict(lambda: [0] * (BUCKETS + 2))
    for row in result.rows:
        group, bucket, n = row[:groups], row[groups], row[groups + 1]
        if bucket is None:
            continue  # the NULL bucket: rows whose value is NULL (n is 0)
        if not isinstance(n, int):
            raise QueryError(
                "a histogram bucket of the quantile search came back suppressed (a node's "
                "minimum cell size); the dataset's policy does not allow this quantile: "
                "narrow bins would single out few records"
            )
        counts[tuple(group)][int(bucket)] += n
    return counts


Searches = dict[tuple[str, Group, int], RankSearch]


def run_quantile_query(
    client: Client,
    plan: QuantileQuery,
    sql: str,
    run: RunQuery,
    *,
    tolerance: float = DEFAULT_TOLERANCE,
) -> QueryResult:
    """Answer a query with quantiles by histogram refinement.

    Args:
        client: The connection (for the directory: column types and bounds).
        plan: The split query.
        sql: The analyst's SQL (recorded on the result).
        run: Runs one aggregate query under the analyst's protocol and options.
        tolerance: Relative width at which a search over a double column stops
            (0: narrow it to one double; integer columns always end exactly).

    Returns:
        The table, with ``error_bounds`` naming each quantile column's largest
        absolute error (0.0: exact) and ``jobs`` every job it took.

    Raises:
        QueryError: A quantile over a non-numeric column, a GROUP BY column not
            selected, or rounds that contradict each other (the data changed meanwhile).
    """
    if not (math.isfinite(tolerance) and tolerance >= 0):
        raise QueryError(f"the quantile tolerance must be finite and >= 0, got {tolerance}")
    started = time.monotonic()
    base = run(plan.base_sql)
    positions = _group_positions(plan, base)
    columns = {item.column: _column(client, plan.dataset, item.column) for item in plan.items}
    for item in plan.items:
        level = columns[item.column].classification
        if item.extreme and level is not Classification.PUBLIC:
            raise PolicyViolationError(
                f"{item.name.upper()} reveals a single record's value; it is allowed only on "
                f"columns classified public, and {item.column!r} is {level.value}"
            )
    searches = _searches(plan, base, positions, columns, tolerance)
    jobs = [base.job_id, *_refine(plan, searches, run)]
    table, errors = _assemble(plan, base, positions, columns, searches)
    return QueryResult(
        job_id=base.job_id,
        sql=sql,
        protocol=base.protocol,
        node_count=base.node_count,
        selected_nodes=base.selected_nodes,
        table=table,
        elapsed=time.monotonic() - started,
        jobs=tuple(jobs),
        error_bounds=errors,
    )


def _group_positions(plan: QuantileQuery, base: QueryResult) -> list[int]:
    positions = []
    for name in plan.group_columns:
        matches = [i for i, c in enumerate(base.columns) if c.lower() == name.lower()]
        if not matches:
            raise QueryError(
                f"a query with quantiles and GROUP BY must also select its group column {name!r}"
            )
        positions.append(matches[0])
    return positions


def _total(row: tuple[Cell, ...], index: int) -> int:
    n = row[index]
    return n if isinstance(n, int) else 0


def _searches(
    plan: QuantileQuery,
    base: QueryResult,
    positions: list[int],
    columns: dict[str, Column],
    tolerance: float,
) -> Searches:
    """One search per (column, group, rank) any quantile needs (shared between quantiles)."""
    searches: Searches = {}
    for row in base.rows:
        group = tuple(row[p] for p in positions)
        for item in plan.items:
            total = _total(row, item.index)
            column = columns[item.column]
            wanted = 0.0 if item.extreme else tolerance  # MIN/MAX: to the last bit
            for rank in ranks(item, total):
                key = (item.column, group, rank)
                if key in searches:
                    searches[key].tolerance = min(searches[key].tolerance, wanted)
                else:
                    lo, hi = _start(column)
                    searches[key] = RankSearch(
                        rank=rank,
                        total=total,
                        lo=lo,
                        hi=hi,
                        integral=column.type is ColumnType.INTEGER,
                        tolerance=wanted,
                    )
    return searches


def _refine(plan: QuantileQuery, searches: Searches, run: RunQuery) -> list[str]:
    """Run histogram rounds until every search is done; returns the jobs' ids."""
    jobs: list[str] = []
    for _ in range(MAX_ROUNDS):
        pending = [(k, s) for k, s in searches.items() if not s.done]
        if not pending:
            return jobs
        asks: dict[tuple[str, tuple[float, float]], set[Group]] = defaultdict(set)
        for (column_name, group, _), search in pending:
            asks[(column_name, search.interval)].add(group)
        texts = {
            ask: histogram_sql(
                plan, ask[0], ask[1], next(iter(groups)) if len(groups) == 1 else None
            )
            for ask, groups in asks.items()
        }
        # A round's jobs are independent: run them side by side (each is mostly waiting).
        with ThreadPoolExecutor(min(PARALLEL_JOBS, len(texts))) as pool:
            results = dict(zip(texts, pool.map(run, texts.values()), strict=True))
        for (column_name, interval), groups in asks.items():
            result = results[(column_name, interval)]
            jobs.append(result.job_id)
            counts = _histograms(result, len(plan.group_columns))
            for (name, group, _), search in pending:
                if name == column_name and group in groups and search.interval == interval:
                    search.update(counts.get(group, [0] * (BUCKETS + 2)))
    raise QueryError(f"a quantile search did not converge in {MAX_ROUNDS} rounds")


def _assemble(
    plan: QuantileQuery,
    base: QueryResult,
    positions: list[int],
    columns: dict[str, Column],
    searches: Searches,
) -> tuple[ResultTable, dict[str, float]]:
    """The base table with each quantile's COUNT replaced by the quantile."""
    rows: list[tuple[Cell, ...]] = []
    errors: dict[str, Fraction] = {item.name: Fraction(0) for item in plan.items}
    integral = {item.index: columns[item.column].type is ColumnType.INTEGER for item in plan.items}
    for row in base.rows:
        group = tuple(row[p] for p in positions)
        cells = list(row)
        for item in plan.items:
            total = _total(row, item.index)
            if total == 0:
                cells[item.index] = None
                continue
            values: dict[int, Fraction] = {}
            for rank in ranks(item, total):
                value, error = searches[(item.column, group, rank)].estimate()
                values[rank] = value
                errors[item.name] = max(errors[item.name], error)
            exact = interpolate(item, total, values)
            discrete_int = item.discrete and integral[item.index] and exact.denominator == 1
            cells[item.index] = int(exact) if discrete_int else float(exact)
        rows.append(tuple(cells))
    kinds = list(base.table.kinds)
    for item in plan.items:
        discrete_int = item.discrete and integral[item.index]
        kinds[item.index] = ColumnKind.INTEGER if discrete_int else ColumnKind.DOUBLE
    table = ResultTable(base.table.columns, tuple(kinds), tuple(rows))
    return table, {name: float(e) for name, e in errors.items()}
