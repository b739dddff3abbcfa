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
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol, TypeVar

from federation.encoding import DOUBLE_LIMIT, INTEGER_LIMIT
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

__all__ = [
    "DEFAULT_TOLERANCE",
    "MAX_ROUNDS",
    "rank_interval",
    "refine",
    "run_quantile_query",
    "start_interval",
]

DEFAULT_TOLERANCE = 1e-9
"""Relative width at which a double column's search stops (integers end exactly)."""
MAX_ROUNDS = 40
"""A search that has not converged by then is an error (it cannot happen with valid data)."""
PARALLEL_JOBS = 8
"""Histogram jobs of one round in flight at once."""

Group = tuple[Cell, ...]
RunQuery = Callable[[str], QueryResult]
Moments = tuple[int, Fraction, Fraction]
"""A column's count, mean and population variance over the rows a quantile ranks."""


class _HasRows(Protocol):
    @property
    def rows(self) -> Sequence[tuple[Cell, ...]]: ...


_R = TypeVar("_R", bound=_HasRows)


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


def start_interval(column: Column) -> tuple[float, float]:
    """The half-open interval a search starts from: declared bounds or the encodable range."""
    if column.bounds is not None:
        lo, hi = float(column.bounds[0]), float(column.bounds[1])
    elif column.type is ColumnType.INTEGER:
        lo, hi = float(-INTEGER_LIMIT), float(INTEGER_LIMIT)
    else:
        lo, hi = -DOUBLE_LIMIT, DOUBLE_LIMIT
    return lo, math.nextafter(hi, math.inf)  # [lo, hi] as a half-open interval


def rank_interval(column: Column, moments: Moments | None, rank: int) -> tuple[float, float]:
    """A half-open interval that holds the order statistic of ``rank`` (0-based).

    ``moments`` are the count ``n``, mean ``μ`` and population variance ``v`` of the
    values ranked. With ``m = min(rank + 1, n - rank)`` values on the far side of the
    order statistic from ``μ``: ``m·(x_(rank) - μ)² <= Σ(x - μ)² = n·v``, so
    ``|x_(rank) - μ| <= sqrt(n·v / m)``. Widened outward past any rounding of ``μ``
    and ``v`` (each correctly rounded, or exact) and clipped to
    :func:`start_interval`; without moments, :func:`start_interval` itself. Starting
    there saves most rounds (and the search falls back to the whole range if a
    start ever misses).
    """
    lo, hi = start_interval(column)
    if moments is None:
        return lo, hi
    n, mean, var = moments
    m = min(rank + 1, n - rank)
    if n <= 0 or m <= 0 or var < 0:
        return lo, hi
    width = math.sqrt(float(n * var / m)) * (1 + 2**-20) + 4 * math.ulp(float(mean))
    low = math.nextafter(float(mean) - width, -math.inf)
    high = math.nextafter(float(mean) + width, math.inf)
    if not (math.isfinite(low) and math.isfinite(high)):
        return lo, hi
    return max(lo, low), min(hi, math.nextafter(high, math.inf))


def _histograms(result: _HasRows, groups: int) -> dict[Group, list[int]]:
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
    jobs = [base.job_id, *(r.job_id for r in refine(plan, searches, run))]
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


def _moments(row: tuple[Cell, ...], total: int, at: tuple[int, int]) -> Moments | None:
    """The count, mean and population variance of a column in this row's group."""
    mean, var = row[at[0]], row[at[1]]
    if isinstance(mean, int | float) and isinstance(var, int | float):
        return total, Fraction(mean), Fraction(var)
    return None  # an empty group (NULL mean) or an unexpected cell: the whole range


def _searches(
    plan: QuantileQuery,
    base: QueryResult,
    positions: list[int],
    columns: dict[str, Column],
    tolerance: float,
) -> Searches:
    """One search per (column, group, rank) any quantile needs (shared between quantiles)."""
    searches: Searches = {}
    at = {
        name: (base.columns.index(mean), base.columns.index(var))
        for name, (mean, var) in plan.moments.items()
    }
    for row in base.rows:
        group = tuple(row[p] for p in positions)
        for item in plan.items:
            total = _total(row, item.index)
            column = columns[item.column]
            wanted = 0.0 if item.extreme else tolerance  # MIN/MAX: to the last bit
            where = at.get(item.column)
            moments = _moments(row, total, where) if where is not None else None
            for rank in ranks(item, total):
                key = (item.column, group, rank)
                if key in searches:
                    searches[key].tolerance = min(searches[key].tolerance, wanted)
                else:
                    lo, hi = rank_interval(column, moments, rank)
                    searches[key] = RankSearch(
                        rank=rank,
                        total=total,
                        lo=lo,
                        hi=hi,
                        integral=column.type is ColumnType.INTEGER,
                        tolerance=wanted,
                        outer=start_interval(column),
                    )
    return searches


def refine(plan: QuantileQuery, searches: Searches, run: Callable[[str], _R]) -> list[_R]:
    """Run histogram rounds until every search is done; returns every round's result.

    A round asks one histogram per distinct (column, interval) among the searches
    still open, restricted to one group when only one needs it, and runs them side
    by side (each job is mostly waiting).
    """
    results: list[_R] = []
    for _ in range(MAX_ROUNDS):
        pending = [(k, s) for k, s in searches.items() if not s.done]
        if not pending:
            return results
        asks: dict[tuple[str, tuple[float, float]], set[Group]] = defaultdict(set)
        for (column_name, group, _), search in pending:
            asks[(column_name, search.interval)].add(group)
        texts = {
            ask: histogram_sql(
                plan,
                ask[0],
                ask[1],
                next(iter(groups)) if len(groups) == 1 and plan.group_columns else None,
            )
            for ask, groups in asks.items()
        }
        with ThreadPoolExecutor(min(PARALLEL_JOBS, len(texts))) as pool:
            answers = dict(zip(texts, pool.map(run, texts.values()), strict=True))
        results.extend(answers.values())
        for ask, groups in asks.items():
            counts = _histograms(answers[ask], len(plan.group_columns))
            for (name, group, _), search in pending:
                if (name, search.interval) == ask and group in groups:
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
    hidden = {name for names in plan.moments.values() for name in names}
    keep = [i for i, name in enumerate(base.table.columns) if name not in hidden]
    table = ResultTable(
        tuple(base.table.columns[i] for i in keep),
        tuple(kinds[i] for i in keep),
        tuple(tuple(row[i] for i in keep) for row in rows),
    )
    return table, {name: float(e) for name, e in errors.items()}
