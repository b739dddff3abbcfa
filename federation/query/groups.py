"""GROUP BY keys: plain categorical columns and bucket expressions with a known set of groups.

Every node must produce aligned vectors, so the set of groups of every key is fixed by
the schema and the SQL alone, before any data is read:

* :class:`GroupColumn`: a categorical column; its groups are the declared domain.
* :class:`FloorBucket`: ``FLOOR(col / w)`` (or ``FLOOR(col)``) on a numeric column with
  declared ``bounds = [lo, hi]``; its groups are every integer from
  ``floor(lo / w)`` to ``floor(hi / w)`` (DOUBLE labels, as DuckDB's ``floor`` returns).
  A node holding a value outside the declared bounds refuses the query with
  :class:`~federation.errors.ValueOutOfRangeError` (no silent overflow bucket).
* :class:`WidthBucket`: ``WIDTH_BUCKET(col, lo, hi, n)`` with numeric literals
  ``lo < hi`` and ``n >= 1``, PostgreSQL semantics: ``1..n`` for equal-width buckets
  of ``[lo, hi)``, ``0`` below ``lo``, ``n + 1`` at or above ``hi`` (INTEGER labels).
  Buckets 0 and n+1 are exact comparisons; the inner buckets are computed in floating
  point (a value next to a boundary may land in the neighbouring bucket), exactly when
  the bucket width is a power of two and ``lo`` a multiple of it
  (:func:`~federation.query.width_buckets.dyadic_width`). NaN refuses the query.
* :class:`CaseBucket`: ``CASE WHEN pred THEN 'label' ... [ELSE 'label'] END`` with
  string-literal labels; the groups are the distinct labels in order of appearance
  (rows matching no branch and no ELSE form the NULL group).

Each key's values are computed by the node in DuckDB from SQL rendered from the checked
AST (quoted identifiers, exact literals).

This module binds a key to the schema, enumerating its groups (:func:`bind_group`), and
gives the condition every row must meet (:func:`group_check`); the expressions are in
:mod:`federation.query.group_exprs`, parsed by :mod:`federation.query.parse_group_keys`
and written as SQL by :mod:`federation.query.render_group_keys`, with the WIDTH_BUCKET
arithmetic in :mod:`federation.query.width_buckets`.
"""

from __future__ import annotations

import math

from federation.errors import DataError, QueryTypeError, UnsupportedQueryError, ValueOutOfRangeError
from federation.query.group_exprs import (
    MAX_BUCKETS,
    CaseBucket,
    FloorBucket,
    GroupColumn,
    GroupExpr,
    GroupKey,
    Label,
    WidthBucket,
    key_columns,
)
from federation.query.parse_group_keys import group_expr_from_sqlglot
from federation.query.render_group_keys import group_name, group_sql, group_to_sqlglot, quote
from federation.query.where import bind_predicate
from federation.query.width_buckets import (
    bucket_sql,
    double_literal,
    dyadic_width,
    width_bucket_sql,
)
from federation.schema import ColumnType, DatasetSchema

__all__ = [
    "MAX_BUCKETS",
    "CaseBucket",
    "FloorBucket",
    "GroupColumn",
    "GroupExpr",
    "GroupKey",
    "Label",
    "WidthBucket",
    "bind_group",
    "bucket_sql",
    "double_literal",
    "dyadic_width",
    "group_check",
    "group_expr_from_sqlglot",
    "group_name",
    "group_sql",
    "group_to_sqlglot",
    "key_columns",
    "width_bucket_sql",
]


def _numeric_column(schema: DatasetSchema, name: str, what: str) -> str:
    col = schema.column(name)
    if not col.is_numeric:
        raise QueryTypeError(f"{what} needs a numeric column, but {col.name!r} is {col.type.value}")
    return col.name


def bind_group(schema: DatasetSchema, expr: GroupExpr) -> GroupKey:
    """Check a group expression against the schema and enumerate its groups.

    Raises:
        UnsupportedQueryError: GROUP BY a non-categorical column; a bucket over a
            column without declared bounds; too many buckets.
        QueryTypeError: A bucket over a non-numeric column, or a CASE predicate
            that does not type-check.
    """
    if isinstance(expr, GroupColumn):
        col = schema.column(expr.column)
        if col.type is not ColumnType.CATEGORICAL:
            hint = (
                f"; bucket it instead, e.g. FLOOR({col.name} / 10) or "
                f"WIDTH_BUCKET({col.name}, lo, hi, n)"
                if col.is_numeric
                else ""
            )
            raise UnsupportedQueryError(
                f"GROUP BY {col.name!r} is not supported: it is a {col.type.value} column, and "
                "only categorical columns (whose declared domain fixes the result layout) can "
                f"be grouped by{hint}"
            )
        bound: GroupExpr = GroupColumn(col.name)
        return GroupKey(bound, col.domain, frozenset(), col.name)
    if isinstance(expr, FloorBucket):
        name = _numeric_column(schema, expr.column, "FLOOR in GROUP BY")
        col = schema.column(name)
        floor = FloorBucket(name, expr.width)
        if col.bounds is None:
            raise UnsupportedQueryError(
                f"GROUP BY {group_name(floor)} needs declared bounds on column {name!r}, so "
                "that every node knows the buckets in advance; declare bounds = [lower, upper] "
                "for it in the node's dataset schema, or use WIDTH_BUCKET(col, lo, hi, n)"
            )
        lo, hi = _floor_range(schema, floor)
        first, last = _floor_of(lo, expr.width), _floor_of(hi, expr.width)
        if last - first + 1 > MAX_BUCKETS:
            raise UnsupportedQueryError(
                f"GROUP BY {group_name(floor)} gives {last - first + 1} buckets over the "
                f"declared bounds of {name!r}; at most {MAX_BUCKETS} are supported: use a "
                "wider bucket"
            )
        labels = tuple(float(k) for k in range(first, last + 1))
        return GroupKey(floor, labels, frozenset(), group_name(floor))
    if isinstance(expr, WidthBucket):
        name = _numeric_column(schema, expr.column, "WIDTH_BUCKET")
        wb = WidthBucket(name, expr.low, expr.high, expr.count)
        return GroupKey(
            wb, tuple(range(expr.count + 2)), frozenset({0, expr.count + 1}), group_name(wb)
        )
    branches = []
    for predicate, label in expr.branches:
        branches.append((bind_predicate(predicate, schema), label))
    case = CaseBucket(tuple(branches), expr.default)
    labels_s = [label for _, label in branches]
    if expr.default is not None:
        labels_s.append(expr.default)
    return GroupKey(case, tuple(dict.fromkeys(labels_s)), frozenset(), "case")


def _floor_range(schema: DatasetSchema, floor: FloorBucket) -> tuple[float, float]:
    """The accepted range ``[lo, hi]`` of a FLOOR bucket's column (integers rounded inward)."""
    col = schema.column(floor.column)
    assert col.bounds is not None  # checked by the caller
    lo, hi = float(col.bounds[0]), float(col.bounds[1])
    if col.type is ColumnType.INTEGER:
        lo, hi = float(math.ceil(lo)), float(math.floor(hi))
    return lo, hi


def _floor_of(value: float, width: str) -> int:
    """``floor(value / width)`` in IEEE double arithmetic, as the node's DuckDB computes it."""
    return math.floor(value / float(width))


def group_check(schema: DatasetSchema, key: GroupKey) -> tuple[str, DataError] | None:
    """A condition every (filtered) row must meet for ``key``, and the error when one fails."""
    e = key.expression
    if isinstance(e, FloorBucket):
        lo, hi = _floor_range(schema, e)
        col = quote(e.column)
        return (
            f"{col} IS NULL OR CAST({col} AS DOUBLE) BETWEEN "
            f"CAST('{lo!r}' AS DOUBLE) AND CAST('{hi!r}' AS DOUBLE)",
            ValueOutOfRangeError(
                f"column {e.column!r} holds a value outside its declared bounds [{lo!r}, {hi!r}], "
                f"so it falls in no bucket of GROUP BY {group_name(e)}; widen the declared "
                "bounds, or filter such rows out with WHERE"
            ),
        )
    if isinstance(e, WidthBucket) and schema.column(e.column).type is ColumnType.DOUBLE:
        col = quote(e.column)
        return (
            f"NOT isnan({col}) OR {col} IS NULL",
            DataError(
                f"column {e.column!r} holds NaN, which WIDTH_BUCKET cannot place; filter it "
                "out with WHERE"
            ),
        )
    return None
