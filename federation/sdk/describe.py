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

Quantiles (median, quartiles) are not computed yet: they are being built separately
as their own aggregate. :data:`QUANTILE_HOOK` is the single place that will add them
to the numeric table (:func:`describe` calls it with the dataset and column names);
until then it adds nothing. Minimum and maximum are omitted: the release policy does
not allow them (they are single rows' values).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from federation.encoding import fixed_point_format
from federation.errors import QueryTypeError, UnsupportedQueryError
from federation.query.finalize import sqrt_ratio
from federation.schema import Column, ColumnType, DatasetSchema
from federation.sdk.moments import Runner, quote_identifier

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MAX_DESCRIBE_GROUPS", "QUANTILE_HOOK", "Description", "describe"]

MAX_DESCRIBE_GROUPS = 4096
"""The most combinations of categorical levels (each domain plus NULL, multiplied)."""

QuantileHook = Callable[[Runner, DatasetSchema, Sequence[str]], dict[str, dict[str, float]]]

QUANTILE_HOOK: list[QuantileHook] = []
"""Where quantiles plug in: each hook returns ``{statistic: {column: value}}`` (e.g.
``{"50%": {"age": 41.0}}``) and its rows are appended to the numeric table."""


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
    """

    rows: int
    numeric: pd.DataFrame
    categorical: dict[str, pd.Series]
    exact: dict[str, tuple[int, Fraction, Fraction]] = field(default_factory=dict)

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
) -> Description:
    """Summary statistics of ``columns`` (default: every numeric and categorical one).

    Quantiles are not included yet (see the module docstring); min/max are withheld.

    Raises:
        UnknownColumnError: A column does not exist.
        QueryTypeError: A named column is free text.
        UnsupportedQueryError: Too many combinations of categorical levels.
    """
    import pandas as pd

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
    for hook in QUANTILE_HOOK:
        for label, by_column in hook(run, schema, [c.name for c in nums]).items():
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
    return Description(total, numeric, categorical, exact)


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
