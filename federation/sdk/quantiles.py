"""The analyst's side of quantile queries: drive the refinement rounds, assemble the table.

:mod:`federation.query.quantiles` holds the method (pure); this module runs its
jobs through an ordinary :class:`~federation.sdk.client.Client`: the base query,
then histogram rounds until every order statistic is pinned down, each round one job
of every histogram still needed (a ``GROUP BY GROUPING SETS`` query; split in a few
jobs, run side by side, only past a job's limits). Every job is an ordinary aggregate
job (recorded by the coordinator, checked by every node, under the protocol the
analyst chose).
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import TYPE_CHECKING, Protocol, TypeVar

from federation.encoding import DOUBLE_LIMIT, INTEGER_LIMIT, MAX_ROWS_PER_NODE, digits_for
from federation.errors import (
    PolicyViolationError,
    QueryError,
    UnknownColumnError,
    UnknownDatasetError,
)
from federation.query.layout import MAX_GROUP_SLOTS, MAX_GROUPING_SETS, MAX_VECTOR_LENGTH
from federation.query.parse import MAX_SQL_LENGTH
from federation.query.quantiles import (
    BUCKETS,
    QuantileQuery,
    RankSearch,
    dyadic_cover,
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
    "rank_searches",
    "refine",
    "run_quantile_query",
    "share_intervals",
    "start_interval",
]

DEFAULT_TOLERANCE = 1e-9
"""Relative width at which a double column's search stops (integers end exactly)."""
MAX_ROUNDS = 40
"""A search that has not converged by then is an error (it cannot happen with valid data)."""
PARALLEL_JOBS = 8
"""Histogram jobs of one round in flight at once (when a round needs several)."""
_SLOT_WIDTH = digits_for(MAX_ROWS_PER_NODE)
"""Vector elements per slot of a histogram job (its one field, the row count)."""

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


def _histograms(result: _HasRows, groups: int, asks: int = 1) -> list[dict[Group, list[int]]]:
    """Bucket counts per ask and group from a round's table (:func:`histogram_sql`: group
    columns, one bucket column per ask, the count)."""
    counts: list[dict[Group, list[int]]] = [
        defaultdict(lambda: [0] * (BUCKETS + 2)) for _ in range(asks)
    ]
    for row in result.rows:
        cells = row[groups : groups + asks]
        found = [i for i, bucket in enumerate(cells) if bucket is not None]
        if not found:
            continue  # the NULL bucket: rows whose value is NULL
        if len(found) > 1:
            raise QueryError("a quantile round's table has a row in two histograms at once")
        n = row[groups + asks]
        if not isinstance(n, int):
            raise QueryError(
                "a histogram bucket of the quantile search came back suppressed (a node's "
                "minimum cell size); the dataset's policy does not allow this quantile: "
                "narrow bins would single out few records"
            )
        bucket = cells[found[0]]
        assert isinstance(bucket, int)
        counts[found[0]][tuple(row[:groups])][bucket] += n
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
    slots = _group_slots(client, plan)
    jobs = [base.job_id, *(r.job_id for r in refine(plan, searches, run, group_slots=slots))]
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


def _group_slots(client: Client, plan: QuantileQuery) -> int:
    """The slots of the query's GROUP BY: each group column's domain plus NULL, multiplied."""
    for info in client.datasets():
        if info.schema.name.lower() == plan.dataset.lower():
            slots = 1
            for name in plan.group_columns:
                if info.schema.has_column(name):
                    slots *= len(info.schema.column(name).domain) + 1
            return slots
    return 1


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
    """One search per (column, group, rank) any quantile needs (shared between quantiles);
    a column's searches in a group start together (:func:`rank_searches`)."""
    searches: Searches = {}
    at = {
        name: (base.columns.index(mean), base.columns.index(var))
        for name, (mean, var) in plan.moments.items()
    }
    for row in base.rows:
        group = tuple(row[p] for p in positions)
        wanted: dict[str, dict[int, float]] = defaultdict(dict)
        totals: dict[str, int] = {}
        for item in plan.items:
            total = totals.setdefault(item.column, _total(row, item.index))
            tol = 0.0 if item.extreme else tolerance  # MIN/MAX: to the last bit
            for rank in ranks(item, total):
                wanted[item.column][rank] = min(wanted[item.column].get(rank, tol), tol)
        for name, tolerances in wanted.items():
            where = at.get(name)
            moments = _moments(row, totals[name], where) if where is not None else None
            found = rank_searches(columns[name], moments, totals[name], tolerances)
            for rank, search in found.items():
                searches[(name, group, rank)] = search
    return searches


def rank_searches(
    column: Column, moments: Moments | None, total: int, tolerances: dict[int, float]
) -> dict[int, RankSearch]:
    """A search per rank (``tolerances``: rank -> its tolerance) of one column in one
    group, all starting from the hull of their :func:`rank_interval` (each holds its
    rank, so the hull holds all), so that the first round asks one histogram for them
    all; widened to its :func:`~federation.query.quantile_histogram.dyadic_cover`, whose buckets
    the nodes compute exactly (each round then narrows by :data:`BUCKETS` and needs no
    verification round).
    """
    if not tolerances:
        return {}
    intervals = [rank_interval(column, moments, rank) for rank in tolerances]
    lo, hi = min(i[0] for i in intervals), max(i[1] for i in intervals)
    lo, hi = dyadic_cover(lo, hi) or (lo, hi)
    outer = start_interval(column)
    outer = (min(outer[0], lo), max(outer[1], hi))  # still holds every value
    return {
        rank: RankSearch(
            rank=rank,
            total=total,
            lo=lo,
            hi=hi,
            integral=column.type is ColumnType.INTEGER,
            tolerance=tol,
            outer=outer,
        )
        for rank, tol in tolerances.items()
    }


def refine(
    plan: QuantileQuery, searches: Searches, run: Callable[[str], _R], *, group_slots: int = 1
) -> list[_R]:
    """Run histogram rounds until every search is done; returns every round's result.

    A round asks one histogram per distinct (column, interval) among the searches still
    open (:func:`share_intervals` first lets searches of a column with overlapping
    intervals ask one), every group's counts at once, all as the grouping sets of one
    job (:func:`histogram_sql`); only when they would exceed a job's limits are they
    split in a few jobs, run side by side. ``group_slots``: the groups of the query's
    GROUP BY (each column's domain plus NULL, multiplied).
    """
    results: list[_R] = []
    for _ in range(MAX_ROUNDS):
        pending = [(k, s) for k, s in searches.items() if not s.done]
        if not pending:
            return results
        share_intervals(pending)
        asks: dict[tuple[str, tuple[float, float]], list[tuple[Group, RankSearch]]] = {}
        spelled: dict[tuple[str, tuple[float, float]], str] = {}
        for (column_name, group, _), search in pending:
            ask = (column_name.lower(), search.interval)
            asks.setdefault(ask, []).append((group, search))
            spelled.setdefault(ask, column_name)
        jobs = _jobs(plan, [(spelled[a], a[1]) for a in asks], group_slots)
        texts = [histogram_sql(plan, job) for job in jobs]
        with ThreadPoolExecutor(min(PARALLEL_JOBS, len(texts))) as pool:
            answers = list(pool.map(run, texts))
        results.extend(answers)
        for job, answer in zip(jobs, answers, strict=True):
            counts = _histograms(answer, len(plan.group_columns), len(job))
            for (column_name, interval), by_group in zip(job, counts, strict=True):
                for group, search in asks[(column_name.lower(), interval)]:
                    search.update(by_group.get(group, [0] * (BUCKETS + 2)))
    raise QueryError(f"a quantile search did not converge in {MAX_ROUNDS} rounds")


def share_intervals(pending: Sequence[tuple[tuple[str, Group, int], RankSearch]]) -> None:
    """Let searches of one column and group whose intervals overlap or touch ask one
    histogram: each such run of searches asks the hull of their intervals (aligned to
    exact buckets, :func:`~federation.query.quantile_histogram.dyadic_cover`, where possible), if
    every one of them allows it (:meth:`~federation.query.rank_search.RankSearch.widen`:
    within its verified interval). Adjacent ranks (``floor(h)`` and ``ceil(h)``) mostly
    fall in one or neighbouring buckets, so they keep sharing."""
    runs: dict[tuple[str, Group], list[RankSearch]] = defaultdict(list)
    for (column_name, group, _), search in pending:
        runs[(column_name.lower(), group)].append(search)
    for members in runs.values():
        members.sort(key=lambda m: m.interval)
        overlapping: list[list[RankSearch]] = []
        for search in members:
            if overlapping and search.lo <= max(r.hi for r in overlapping[-1]):
                overlapping[-1].append(search)
            else:
                overlapping.append([search])
        for run in overlapping:
            hull = (run[0].lo, max(r.hi for r in run))
            cover = dyadic_cover(*hull)
            for lo, hi in [hull] if cover is None else [cover, hull]:
                if all(r.interval == (lo, hi) for r in run):
                    break
                if all(r.allows(lo, hi) for r in run):
                    for r in run:
                        r.widen(lo, hi)
                    break


def _jobs(
    plan: QuantileQuery, asks: list[tuple[str, tuple[float, float]]], group_slots: int
) -> list[list[tuple[str, tuple[float, float]]]]:
    """The asks split into as few jobs as a job's limits allow (vector slots, grouping
    sets, SQL length)."""
    per_ask = group_slots * (BUCKETS + 3)  # buckets 0..n+1 and NULL, in every group
    jobs: list[list[tuple[str, tuple[float, float]]]] = [[]]
    slots = length = 0
    for ask in asks:
        size = len(histogram_sql(plan, [ask]))  # about what the ask adds to the text
        full = (
            slots + per_ask > MAX_GROUP_SLOTS
            or (slots + per_ask) * _SLOT_WIDTH > MAX_VECTOR_LENGTH
            or len(jobs[-1]) >= MAX_GROUPING_SETS
            or length + size > MAX_SQL_LENGTH // 2
        )
        if jobs[-1] and full:
            jobs.append([])
            slots = length = 0
        jobs[-1].append(ask)
        slots += per_ask
        length += size
    return jobs


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
