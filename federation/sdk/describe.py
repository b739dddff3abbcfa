"""``describe``: summary statistics of every column of a dataset, in one job.

For each numeric column: the count of non-NULL values, the mean and the sample
standard deviation, from the exact sums ``n, ΣX, ΣX²`` (each released as an exact
integer, then rounded once: the mean correctly rounded, the standard deviation the
correctly rounded square root of the exact variance). For each categorical column:
the count of every declared level and of NULL.

One query computes everything: it groups by all categorical columns together (so the
joint counts of the categorical columns are released to the analyst, and their
product of domain sizes is bounded by :data:`MAX_DESCRIBE_GROUPS`; pass ``columns`` to
describe fewer), and the per-group exact sums add up to each column's totals.

Quantiles (by default 25%, 50%, 75%, as ``pandas.DataFrame.describe``) take extra
jobs: after the summary job, histogram refinement rounds
(:mod:`federation.query.quantiles`), each round one job whose grouping sets are the
histograms of every column and interval still being narrowed (the first round one per
column, for all its quantiles), typically 3 rounds. They are
``QUANTILE_CONT`` (linear interpolation, as pandas and DuckDB), over the same rows
(``where``); each reported value is within its error bound
(:attr:`Description.quantile_errors`, 0.0 when exact: integer columns, or an interval
narrowed to one double) of the exact quantile of the pooled data. ``quantiles=()``
skips them (one job in all). Minimum and maximum are omitted: the release policy does
not allow them (they are single rows' values).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from federation.encoding import fixed_point_format
from federation.errors import QueryTypeError, UnsupportedQueryError
from federation.query.finalize import sqrt_ratio
from federation.query.quantiles import RankSearch, interpolate, ranks, split_quantiles
from federation.schema import Column, ColumnType, DatasetSchema
from federation.sdk.moments import Runner, quote_identifier
from federation.sdk.quantiles import rank_searches, refine
from federation.table import Cell

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_QUANTILES",
    "MAX_DESCRIBE_GROUPS",
    "QUANTILE_TOLERANCE",
    "Description",
    "describe",
]

MAX_DESCRIBE_GROUPS = 4096
"""The most combinations of categorical levels (each domain plus NULL, multiplied)."""

DEFAULT_QUANTILES = (0.25, 0.5, 0.75)
"""The quantiles :func:`describe` reports by default (pandas' ``25%``, ``50%``, ``75%``)."""

QUANTILE_TOLERANCE = 1e-9
"""Relative width at which a double column's quantile search stops (the default of
``Client.query``); integer columns end exactly."""


@dataclass(frozen=True)
class Description:
    """What :func:`describe` returns.

    Attributes:
        rows: Rows considered (after ``where``).
        numeric: ``count``, ``mean``, ``std`` (rows) per numeric column (columns),
            like ``pandas.DataFrame.describe``.
        categorical: Per categorical column, the count of each level (NULL last, as
            ``None``).
        exact: Per numeric column ``(n, Σx, Σx²)`` as exact rationals.
        quantile_errors: Per quantile row of ``numeric`` (``"25%"``, ...), per column,
            the largest absolute error of the reported value (0.0: exact); NaN
            quantiles (no values) have no entry.
        jobs: Jobs the description took (1, plus the quantiles' histogram jobs).
    """

    rows: int
    numeric: pd.DataFrame
    categorical: dict[str, pd.Series]
    exact: dict[str, tuple[int, Fraction, Fraction]] = field(default_factory=dict)
    quantile_errors: dict[str, dict[str, float]] = field(default_factory=dict)
    jobs: int = 1

    def __str__(self) -> str:
        parts = [f"{self.rows} rows"]
        if not self.numeric.empty:
            parts.append(self.numeric.to_string(float_format=lambda v: f"{v:.10g}"))
        for name, counts in self.categorical.items():
            body = "  ".join(
                f"{'NULL' if not isinstance(k, str) else k}: {v}" for k, v in counts.items()
            )
            parts.append(f"{name}: {body}")
        return "\n".join(parts)


def describe(
    run: Runner,
    schema: DatasetSchema,
    *,
    columns: Sequence[str] | None = None,
    where: str | None = None,
    quantiles: Sequence[float] = DEFAULT_QUANTILES,
    quantile_tolerance: float = QUANTILE_TOLERANCE,
) -> Description:
    """Summary statistics of ``columns`` (default: every numeric and categorical one).

    Count, mean and standard deviation per numeric column and the level counts come
    from one job; each of ``quantiles`` (in ``[0, 1]``, labelled like pandas: ``25%``)
    per numeric column takes the histogram jobs described in the module docstring
    (``quantiles=()``: none). Min/max are withheld.

    Raises:
        UnknownColumnError: A column does not exist.
        QueryTypeError: A named column is free text.
        UnsupportedQueryError: Too many combinations of categorical levels, or a
            quantile outside ``[0, 1]``.
    """
    import pandas as pd

    levels = _quantile_levels(quantiles)
    if not (math.isfinite(quantile_tolerance) and quantile_tolerance >= 0):
        raise UnsupportedQueryError(
            f"the quantile tolerance must be finite and >= 0, got {quantile_tolerance}"
        )
    chosen = _columns(schema, columns)
    nums = [c for c in chosen if c.is_numeric]
    cats = [c for c in chosen if c.type is ColumnType.CATEGORICAL]
    groups = math.prod(len(c.domain) + 1 for c in cats)
    if groups > MAX_DESCRIBE_GROUPS:
        raise UnsupportedQueryError(
            f"describing {len(cats)} categorical columns together needs {groups} groups; at "
            f"most {MAX_DESCRIBE_GROUPS} are supported: pass fewer columns"
        )
    bits = [fixed_point_format(c).fraction_bits for c in nums]
    items = [quote_identifier(c.name) for c in cats]
    items.append('COUNT(*) AS "d__rows"')
    for i, c in enumerate(nums):
        q = quote_identifier(c.name)
        one = f"{1 << bits[i]} * " if bits[i] else ""
        two = f"{1 << (2 * bits[i])} * " if bits[i] else ""
        items += [
            f'COUNT({q}) AS "d__n{i}"',
            f'{one}SUM({q}) AS "d__s{i}"',
            f'{two}SUM({q} * {q}) AS "d__q{i}"',
        ]
    sql = f"SELECT {', '.join(items)} FROM {quote_identifier(schema.name)}"  # noqa: S608 - quoted
    if where is not None:
        sql += f" WHERE {where}"
    if cats:
        sql += " GROUP BY " + ", ".join(quote_identifier(c.name) for c in cats)
    table = run(sql)
    k = len(cats)
    total = 0
    sums = [[0, 0, 0] for _ in nums]
    level_counts: list[dict[str | None, int]] = [
        {**dict.fromkeys(c.domain, 0), None: 0} for c in cats
    ]
    for row in table.rows:
        values = [0 if v is None else int(v) for v in row[k:]]
        total += values[0]
        for j in range(k):
            label = row[j]
            level_counts[j][None if label is None else str(label)] += values[0]
        for i in range(len(nums)):
            for m in range(3):
                sums[i][m] += values[1 + 3 * i + m]
    stats: dict[str, list[float]] = {}
    exact: dict[str, tuple[int, Fraction, Fraction]] = {}
    for i, c in enumerate(nums):
        n, s1, s2 = sums[i]
        f = bits[i]
        exact[c.name] = (n, Fraction(s1, 1 << f), Fraction(s2, 1 << (2 * f)))
        mean = s1 / (n << f) if n else math.nan
        std = sqrt_ratio(n * s2 - s1 * s1, (n * (n - 1)) << (2 * f)) if n > 1 else math.nan
        stats[c.name] = [float(n), mean, std]
    numeric = pd.DataFrame(stats, index=["count", "mean", "std"], columns=[c.name for c in nums])
    errors: dict[str, dict[str, float]] = {}
    jobs = 1
    if levels and nums:
        found, errors, jobs = _quantiles(
            run,
            schema,
            nums=nums,
            moments=exact,
            levels=levels,
            where=where,
            tolerance=quantile_tolerance,
        )
        for label, by_column in found.items():
            numeric.loc[label] = [by_column.get(c.name, math.nan) for c in nums]
    categorical = {
        c.name: pd.Series(
            list(level_counts[j].values()),
            index=pd.Index(list(level_counts[j]), dtype=object),
            name=c.name,
            dtype="int64",
        )
        for j, c in enumerate(cats)
    }
    return Description(total, numeric, categorical, exact, errors, jobs)


def _quantile_levels(quantiles: Sequence[float]) -> list[tuple[str, Fraction]]:
    """``(label, q)`` per distinct quantile, in order; labels as pandas (``25%``)."""
    out: dict[str, Fraction] = {}
    for q in quantiles:
        if isinstance(q, bool) or not isinstance(q, (int, float)) or not 0 <= q <= 1:
            raise UnsupportedQueryError(f"quantiles must be numbers in [0, 1], got {q!r}")
        label = f"{float(q) * 100:g}%"
        out.setdefault(label, Fraction(float(q)))
    return list(out.items())


def _quantiles(
    run: Runner,
    schema: DatasetSchema,
    *,
    nums: list[Column],
    moments: dict[str, tuple[int, Fraction, Fraction]],
    levels: list[tuple[str, Fraction]],
    where: str | None,
    tolerance: float,
) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]], int]:
    """The quantiles of every numeric column, by histogram refinement.

    The summary job already has each column's exact ``n, Σx, Σx²`` (under ``where``),
    so the searches need no base job, and each column's start from an interval that
    provably holds all its order statistics (:func:`~federation.sdk.quantiles.rank_searches`)
    rather than the whole encodable range, which saves most rounds. Returns
    ``({label: {column: value}}, {label: {column: error bound}}, jobs run)``.
    """
    items = [
        f'QUANTILE_CONT({quote_identifier(c.name)}, {float(q)!r}) AS "{c.name} {label}"'
        for c in nums
        for label, q in levels
    ]
    sql = f"SELECT {', '.join(items)} FROM {quote_identifier(schema.name)}"  # noqa: S608
    if where is not None:
        sql += f" WHERE {where}"
    plan = split_quantiles(sql)
    assert plan is not None  # the select list is quantiles only
    by_name = {c.name: c for c in nums}
    totals = {name: m[0] for name, m in moments.items()}
    searches: dict[tuple[str, tuple[Cell, ...], int], RankSearch] = {}
    for column in nums:
        n, s1, s2 = moments[column.name]
        mean_var = (n, s1 / n, (s2 - s1 * s1 / n) / n) if n > 0 else None
        wanted = {
            rank: tolerance
            for item in plan.items
            if by_name[item.column] is column
            for rank in ranks(item, n)
        }
        for rank, search in rank_searches(column, mean_var, n, wanted).items():
            searches[(column.name, (), rank)] = search
    jobs = 1 + len(refine(plan, searches, run))
    values: dict[str, dict[str, float]] = defaultdict(dict)
    errors: dict[str, dict[str, float]] = defaultdict(dict)
    labels = [label for _ in nums for label, _ in levels]  # the order of ``items``
    for item, label in zip(plan.items, labels, strict=True):
        n = totals[item.column]
        if n == 0:
            continue
        exact: dict[int, Fraction] = {}
        bound = Fraction(0)
        for rank in ranks(item, n):
            exact[rank], error = searches[(item.column, (), rank)].estimate()
            bound = max(bound, error)
        values[label][item.column] = float(interpolate(item, n, exact))
        errors[label][item.column] = float(bound)
    return dict(values), dict(errors), jobs


def _columns(schema: DatasetSchema, columns: Sequence[str] | None) -> list[Column]:
    if columns is None:
        return [c for c in schema.columns if c.type is not ColumnType.TEXT]
    if isinstance(columns, str):
        columns = [columns]
    out: list[Column] = []
    for name in columns:
        col = schema.column(name)
        if col.type is ColumnType.TEXT:
            raise QueryTypeError(f"column {col.name!r} is free text; describe cannot summarize it")
        if col not in out:
            out.append(col)
    return out
