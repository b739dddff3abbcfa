"""Exact moment matrices of a design, from one aggregate query (one secure sum).

A linear model needs ``n``, ``X'X``, ``X'y`` and ``y'y`` over the rows where every
variable is present (listwise deletion). They are asked for in SQL the nodes can check
and compute exactly: ``SUM(a * b)`` of two numeric columns is an exact cross product
(:mod:`federation.query`), and multiplying a SUM over double columns by ``2**52`` per
double factor makes it an exact integer output (released as a big integer, never
rounded). Categorical predictors are grouped by: within a group their one-hot
indicators are constant, so the per-group counts and sums give every cross product
with the indicators. The whole matrix is therefore one query, one job, one secure
aggregation.

What the analyst learns is exactly these moments (per combination of the categorical
predictors' levels), nothing per row.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction

from federation.encoding import fixed_point_format
from federation.errors import QueryTypeError, UnsupportedQueryError
from federation.schema import Column, ColumnType, DatasetSchema
from federation.table import ResultTable

__all__ = ["Group", "GroupedMoments", "Runner", "Term", "grouped_moments", "quote_identifier"]

Runner = Callable[[str], ResultTable]
"""Runs one aggregate SQL query as a job and returns its released table."""


def quote_identifier(name: str) -> str:
    """A double-quoted SQL identifier (schema names are plain identifiers)."""
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True)
class Term:
    """One column of the design matrix.

    ``column`` is ``None`` for the intercept; ``level`` is set for the one-hot
    indicator of a categorical column's level.
    """

    column: str | None
    level: str | None = None

    @property
    def name(self) -> str:
        """The display name: ``intercept``, ``x`` or ``g[level]``."""
        if self.column is None:
            return "intercept"
        return self.column if self.level is None else f"{self.column}[{self.level}]"


@dataclass(frozen=True)
class Group:
    """The exact moments of one combination of categorical levels."""

    labels: tuple[str, ...]
    count: int
    sums: tuple[Fraction, ...]
    """``Σ x_i`` per numeric variable."""
    products: dict[tuple[int, int], Fraction]
    """``Σ x_i x_j`` for ``i <= j``."""

    def product(self, i: int, j: int) -> Fraction:
        """``Σ x_i x_j`` (either order)."""
        return self.products[(i, j) if i <= j else (j, i)]


@dataclass(frozen=True)
class GroupedMoments:
    """Exact moments over the complete rows, per group of the categorical variables."""

    numeric: tuple[Column, ...]
    categorical: tuple[Column, ...]
    n: int
    groups: tuple[Group, ...]

    def level_count(self, k: int, level: str) -> int:
        """Rows whose ``k``-th categorical variable has ``level``."""
        return sum(g.count for g in self.groups if g.labels[k] == level)

    def cross(self, terms: Sequence[Term]) -> list[list[Fraction]]:  # noqa: PLR0912 - per term kind
        """``Σ z_a z_b`` over the rows for the design vector ``z`` of ``terms``."""
        index = {c.name: i for i, c in enumerate(self.numeric)}
        cat_index = {c.name: k for k, c in enumerate(self.categorical)}
        q = len(terms)
        out = [[Fraction(0)] * q for _ in range(q)]
        for g in self.groups:
            # constant part of every term in this group (None: a numeric term)
            const: list[int | None] = []
            for t in terms:
                if t.column is None:
                    const.append(1)
                elif t.level is not None:
                    const.append(int(g.labels[cat_index[t.column]] == t.level))
                else:
                    const.append(None)
            for a in range(q):
                for b in range(a, q):
                    ca, cb = const[a], const[b]
                    if ca is not None and cb is not None:
                        value = Fraction(g.count * ca * cb)
                    elif ca is not None:
                        value = ca * g.sums[index[terms[b].column]]  # type: ignore[index]
                    elif cb is not None:
                        value = cb * g.sums[index[terms[a].column]]  # type: ignore[index]
                    else:
                        value = g.product(
                            index[terms[a].column],  # type: ignore[index]
                            index[terms[b].column],  # type: ignore[index]
                        )
                    out[a][b] += value
        for a in range(q):
            for b in range(a):
                out[a][b] = out[b][a]
        return out


def _checked_columns(schema: DatasetSchema, names: Sequence[str], *, what: str) -> list[Column]:
    columns: list[Column] = []
    for name in names:
        if not isinstance(name, str):
            raise QueryTypeError(f"{what} must be column names, got {type(name).__name__}")
        col = schema.column(name)
        if col.type is ColumnType.TEXT:
            raise QueryTypeError(
                f"column {col.name!r} is free text; {what} must be numeric or categorical"
            )
        if any(c.name == col.name for c in columns):
            raise UnsupportedQueryError(f"{what} name column {col.name!r} twice")
        columns.append(col)
    return columns


def grouped_moments(  # noqa: PLR0912 - builds and reads one query
    run: Runner,
    schema: DatasetSchema,
    *,
    numeric: Sequence[str],
    categorical: Sequence[str] = (),
    where: str | None = None,
) -> GroupedMoments:
    """Run the moment query (one job) and return the exact per-group moments.

    Rows where any of the variables is NULL are left out (listwise deletion), as are
    rows ``where`` rejects (a SQL predicate of the supported subset).

    Raises:
        UnknownColumnError: A variable is not a column of the dataset.
        QueryTypeError: A numeric variable is not numeric, a categorical one not
            categorical, or a variable is free text.
        UnsupportedQueryError: A variable is named twice, or ``where`` is empty.
    """
    nums = _checked_columns(schema, numeric, what="numeric variables")
    cats = _checked_columns(schema, categorical, what="categorical variables")
    for col in nums:
        if not col.is_numeric:
            raise QueryTypeError(f"column {col.name!r} is {col.type.value}, not numeric")
    for col in cats:
        if col.type is not ColumnType.CATEGORICAL:
            raise QueryTypeError(f"column {col.name!r} is {col.type.value}, not categorical")
    bits = [fixed_point_format(c).fraction_bits for c in nums]
    items = [quote_identifier(c.name) for c in cats]
    items.append('COUNT(*) AS "m__n"')

    def scaled(total_bits: int, body: str, alias: str) -> str:
        factor = f"{1 << total_bits} * " if total_bits else ""
        return f'{factor}SUM({body}) AS "{alias}"'

    for i, col in enumerate(nums):
        items.append(scaled(bits[i], quote_identifier(col.name), f"m__s{i}"))
    for i, a in enumerate(nums):
        for j in range(i, len(nums)):
            b = nums[j]
            body = f"{quote_identifier(a.name)} * {quote_identifier(b.name)}"
            items.append(scaled(bits[i] + bits[j], body, f"m__p{i}_{j}"))
    conditions = [f"{quote_identifier(c.name)} IS NOT NULL" for c in (*nums, *cats)]
    if where is not None:
        if not isinstance(where, str) or not where.strip():
            raise UnsupportedQueryError("where must be a non-empty SQL predicate")
        conditions.append(f"({where})")
    # Quoted identifiers and our own literals; the analyst's WHERE is parsed and
    # checked like any query text, by the coordinator and by every node.
    sql = f"SELECT {', '.join(items)} FROM {quote_identifier(schema.name)}"  # noqa: S608
    if conditions:
        sql += f" WHERE {' AND '.join(conditions)}"
    if cats:
        sql += " GROUP BY " + ", ".join(quote_identifier(c.name) for c in cats)
    table = run(sql)
    groups: list[Group] = []
    total = 0
    k = len(cats)
    for row in table.rows:
        values = [0 if v is None else v for v in row[k:]]
        count = int(values[0])
        if count == 0:
            continue
        total += count
        sums = tuple(Fraction(int(values[1 + i]), 1 << bits[i]) for i in range(len(nums)))
        products: dict[tuple[int, int], Fraction] = {}
        pos = 1 + len(nums)
        for i in range(len(nums)):
            for j in range(i, len(nums)):
                products[(i, j)] = Fraction(int(values[pos]), 1 << (bits[i] + bits[j]))
                pos += 1
        groups.append(Group(tuple(str(v) for v in row[:k]), count, sums, products))
    return GroupedMoments(tuple(nums), tuple(cats), total, tuple(groups))
