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
  (:func:`dyadic_width`). NaN refuses the query.
* :class:`CaseBucket`: ``CASE WHEN pred THEN 'label' ... [ELSE 'label'] END`` with
  string-literal labels; the groups are the distinct labels in order of appearance
  (rows matching no branch and no ELSE form the NULL group).

Each key's values are computed by the node in DuckDB from SQL rendered here from the
checked AST (quoted identifiers, exact literals).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

from sqlglot import exp

from federation.errors import DataError, QueryTypeError, UnsupportedQueryError, ValueOutOfRangeError
from federation.query.expr import Expr, NumberLiteral, columns_of
from federation.query.where import (
    bind_predicate,
    column_name,
    predicate_from_sqlglot,
    render_predicate,
    to_sqlglot,
)
from federation.schema import ColumnType, DatasetSchema

__all__ = [
    "MAX_BUCKETS",
    "CaseBucket",
    "FloorBucket",
    "GroupColumn",
    "GroupExpr",
    "GroupKey",
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

MAX_BUCKETS = 2**20
"""The most groups one bucket expression may define."""

Label = str | int | float


@dataclass(frozen=True)
class GroupColumn:
    """A categorical column (in GROUP BY, or a select-list reference to one)."""

    column: str


@dataclass(frozen=True)
class FloorBucket:
    """``FLOOR(column / width)``; ``width`` is the text of a positive numeric literal."""

    column: str
    width: str = "1"


@dataclass(frozen=True)
class WidthBucket:
    """``WIDTH_BUCKET(column, low, high, count)`` (literal texts for the bounds)."""

    column: str
    low: str
    high: str
    count: int


@dataclass(frozen=True)
class CaseBucket:
    """``CASE WHEN predicate THEN 'label' ... [ELSE 'label'] END``."""

    branches: tuple[tuple[Expr, str], ...]
    default: str | None = None


GroupExpr = GroupColumn | FloorBucket | WidthBucket | CaseBucket


@dataclass(frozen=True)
class GroupKey:
    """A bound GROUP BY key and its groups.

    Attributes:
        expression: The key, with schema-spelled column names and bound predicates.
        labels: The non-NULL group values, in output order.
        sparse: Positions in ``labels`` reported only when they have rows (the
            out-of-range buckets 0 and n+1 of WIDTH_BUCKET); the NULL group is
            always sparse.
        name: The default output name.
    """

    expression: GroupExpr
    labels: tuple[Label, ...]
    sparse: frozenset[int]
    name: str

    def to_dict(self) -> list[object]:
        """Canonical JSON-ready form (bound into the layout and fingerprint)."""
        return [repr(self.expression), [repr(v) for v in self.labels], sorted(self.sparse)]


# ---------------------------------------------------------------- sqlglot -> AST


def _positive_literal(node: exp.Expression, what: str) -> str:
    if isinstance(node, exp.Literal) and not node.is_string:
        text = str(node.this)
        try:
            value = Decimal(text)
        except ArithmeticError:
            value = Decimal(0)
        if value.is_finite() and value > 0 and math.isfinite(float(value)) and float(value) > 0:
            return text
    raise UnsupportedQueryError(f"{what} must be a positive numeric literal, found {node.sql()!r}")


def _number_literal(node: exp.Expression | None, what: str) -> str:
    negative = False
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Neg):
        negative, node = True, node.this
    if isinstance(node, exp.Literal) and not node.is_string:
        text = str(node.this)
        try:
            ok = Decimal(text).is_finite() and math.isfinite(float(text))
        except (ArithmeticError, ValueError):
            ok = False
        if ok:
            return f"-{text}" if negative else text
    found = node.sql() if node is not None else "nothing"
    raise UnsupportedQueryError(f"{what} must be a numeric literal, found {found!r}")


def group_expr_from_sqlglot(node: exp.Expression, table_names: frozenset[str]) -> GroupExpr | None:
    """The group expression ``node`` spells, or ``None`` when it is not of a group form.

    Raises:
        UnsupportedQueryError: A FLOOR, WIDTH_BUCKET or CASE whose shape is not supported.
    """
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.Column):
        return GroupColumn(column_name(node, table_names))
    if isinstance(node, exp.Floor):
        return _floor(node, table_names)
    if isinstance(node, exp.WidthBucket):
        return _width_bucket(node, table_names)
    if isinstance(node, exp.Case):
        return _case(node, table_names)
    return None


_FLOOR_HINT = "write FLOOR(column / width) with a positive numeric literal width"


def _floor(node: exp.Floor, table_names: frozenset[str]) -> FloorBucket:
    if node.args.get("decimals") is not None or node.args.get("to") is not None:
        raise UnsupportedQueryError(f"FLOOR with a second argument is not supported; {_FLOOR_HINT}")
    arg = node.this
    while isinstance(arg, exp.Paren):
        arg = arg.this
    if isinstance(arg, exp.Column):
        return FloorBucket(column_name(arg, table_names))
    if isinstance(arg, exp.Div) and isinstance(arg.this, exp.Column):
        width = _positive_literal(arg.expression, "the width in FLOOR(column / width)")
        return FloorBucket(column_name(arg.this, table_names), width)
    raise UnsupportedQueryError(f"GROUP BY {node.sql()!r} is not supported; {_FLOOR_HINT}")


def _width_bucket(node: exp.WidthBucket, table_names: frozenset[str]) -> WidthBucket:
    arg = node.this
    if not isinstance(arg, exp.Column):
        raise UnsupportedQueryError(
            "the first argument of WIDTH_BUCKET must be a column, found "
            f"{arg.sql() if arg is not None else 'nothing'!r}"
        )
    low = _number_literal(node.args.get("min_value"), "the lower bound of WIDTH_BUCKET")
    high = _number_literal(node.args.get("max_value"), "the upper bound of WIDTH_BUCKET")
    count_node = node.args.get("num_buckets")
    if not (
        isinstance(count_node, exp.Literal)
        and not count_node.is_string
        and str(count_node.this).isdigit()
        and 1 <= int(count_node.this) <= MAX_BUCKETS - 2
    ):
        raise UnsupportedQueryError(
            f"the bucket count of WIDTH_BUCKET must be an integer literal from 1 to "
            f"{MAX_BUCKETS - 2}"
        )
    if not Decimal(low) < Decimal(high):
        raise UnsupportedQueryError(
            f"WIDTH_BUCKET needs lower bound < upper bound, found {low} and {high}"
        )
    return WidthBucket(column_name(arg, table_names), low, high, int(count_node.this))


def _label(node: exp.Expression | None) -> str:
    if isinstance(node, exp.Literal) and node.is_string:
        return str(node.this)
    found = node.sql() if node is not None else "nothing"
    raise UnsupportedQueryError(
        f"CASE buckets need string-literal labels (THEN 'label'), found {found!r}"
    )


def _case(node: exp.Case, table_names: frozenset[str]) -> CaseBucket:
    if node.this is not None:
        raise UnsupportedQueryError(
            "CASE <value> WHEN ... is not supported in GROUP BY; write CASE WHEN <predicate> "
            "THEN 'label' ... END"
        )
    branches = tuple(
        (predicate_from_sqlglot(branch.this, table_names), _label(branch.args.get("true")))
        for branch in node.args.get("ifs") or []
    )
    default = node.args.get("default")
    return CaseBucket(branches, _label(default) if default is not None else None)


# ---------------------------------------------------------------- binding


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


# ---------------------------------------------------------------- rendering


def _double(text: str) -> str:
    """An exact DOUBLE literal of a decimal text (DuckDB's string cast rounds correctly)."""
    return f"CAST('{float(text)!r}' AS DOUBLE)"


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def group_sql(key: GroupKey) -> str:
    """The DuckDB expression of a key's value for one row (NULL for the NULL group)."""
    e = key.expression
    if isinstance(e, GroupColumn):
        return _quote(e.column)
    if isinstance(e, FloorBucket):
        value = f"CAST({_quote(e.column)} AS DOUBLE)"
        if Decimal(e.width) == 1:
            return f"floor({value})"
        return f"floor({value} / {_double(e.width)})"
    if isinstance(e, WidthBucket):
        x = f"CAST({_quote(e.column)} AS DOUBLE)"
        lo, hi, inside = width_bucket_sql(e, x)
        return (
            f"CASE WHEN {x} IS NULL THEN NULL WHEN {x} < {lo} THEN 0 "
            f"WHEN {x} >= {hi} THEN {e.count + 1} ELSE {inside} END"
        )
    parts = " ".join(
        f"WHEN {render_predicate(p)} THEN {exp.Literal.string(label).sql(dialect='duckdb')}"
        for p, label in e.branches
    )
    default = (
        f" ELSE {exp.Literal.string(e.default).sql(dialect='duckdb')}"
        if e.default is not None
        else ""
    )
    return f"CASE {parts}{default} END"


def dyadic_width(low: float, high: float, count: int) -> float | None:
    """The bucket width ``w`` of ``WIDTH_BUCKET(x, low, high, count)`` when every bucket
    boundary ``low + k·w`` is a double that DuckDB computes exactly (so the node puts
    every value in its exact bucket); otherwise ``None``.

    That is when ``w = (high - low) / count`` is a power of two (a normal double),
    ``low`` is a multiple of ``w`` and ``|low|, |high| <= 2**53·w``.

    >>> dyadic_width(0.0, 1.0, 4), dyadic_width(0.0, 1.0, 3), dyadic_width(0.25, 1.25, 4)
    (0.25, None, 0.25)
    """
    if not (math.isfinite(low) and math.isfinite(high) and low < high and count >= 1):
        return None
    w = (Fraction(high) - Fraction(low)) / count
    num, den = w.numerator, w.denominator
    if not ((num == 1 and den & (den - 1) == 0) or (den == 1 and num & (num - 1) == 0)):
        return None
    width = float(w)
    if not 2.0**-1022 <= width <= 2.0**1000 or (Fraction(low) / w).denominator != 1:
        return None
    return width if max(abs(low), abs(high)) <= 2.0**53 * width else None


def double_literal(value: float) -> str:
    """A DuckDB DOUBLE literal of a finite double, exact (``repr`` with an exponent:
    DuckDB reads it as a DOUBLE, correctly rounded)."""
    text = repr(float(value))
    return text if "e" in text else f"{text}e0"


def bucket_sql(x: str, lo: str, hi: str, count: int, exact: tuple[str, str] | None) -> str:
    """The bucket (1 to ``count``) of a value ``x`` known to lie in ``[lo, hi)``, all
    SQL of DOUBLEs; ``exact``: the SQL of the width ``w`` and of ``1/w`` for dyadic
    bounds (:func:`dyadic_width`), else ``None``.

    The bucket is ``floor(n·(x - lo) / (hi - lo)) + 1`` in floating point, which may put
    a value next to a boundary in the neighbouring bucket; with dyadic bounds it is
    exact: the estimate ``e = floor((x - lo)·(1/w))`` is off by at most one (``x - lo``
    is rounded once, by far less than ``w``), and two comparisons with the exact
    boundaries ``lo + e·w`` and ``lo + (e+1)·w`` correct it.
    """
    if exact is not None:
        w, inverse = exact
        estimate = f"least(floor(({x} - {lo}) * {inverse}), {double_literal(count - 1)})"
        below = f"({x} < {lo} + {estimate} * {w})::INTEGER"
        above = f"({x} >= {lo} + ({estimate} + 1) * {w})::INTEGER"
        return f"CAST({estimate} + 1 - {below} + {above} AS BIGINT)"
    fraction = f"({x} - {lo}) / ({hi} - {lo})"
    return f"least(CAST(floor({count} * ({fraction})) AS BIGINT), {count - 1}) + 1"


def width_bucket_sql(e: WidthBucket, x: str) -> tuple[str, str, str]:
    """DuckDB SQL of a WIDTH_BUCKET's bounds and of the bucket of a value ``x`` (SQL of
    a DOUBLE) known to lie in ``[lo, hi)`` (:func:`bucket_sql`): ``(lo, hi, bucket)``."""
    low, high = float(e.low), float(e.high)
    lo, hi = double_literal(low), double_literal(high)
    width = dyadic_width(low, high, e.count)
    exact = None if width is None else (double_literal(width), double_literal(1 / width))
    return lo, hi, bucket_sql(x, lo, hi, e.count, exact)


def group_check(schema: DatasetSchema, key: GroupKey) -> tuple[str, DataError] | None:
    """A condition every (filtered) row must meet for ``key``, and the error when one fails."""
    e = key.expression
    if isinstance(e, FloorBucket):
        lo, hi = _floor_range(schema, e)
        col = _quote(e.column)
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
        col = _quote(e.column)
        return (
            f"NOT isnan({col}) OR {col} IS NULL",
            DataError(
                f"column {e.column!r} holds NaN, which WIDTH_BUCKET cannot place; filter it "
                "out with WHERE"
            ),
        )
    return None


def key_columns(expr: GroupExpr) -> list[str]:
    """The dataset columns a group expression reads."""
    if isinstance(expr, CaseBucket):
        return [c for predicate, _ in expr.branches for c in columns_of(predicate)]
    return [expr.column]


def group_name(expr: GroupExpr) -> str:
    """The default output name of a group expression."""
    if isinstance(expr, GroupColumn):
        return expr.column
    if isinstance(expr, FloorBucket):
        if Decimal(expr.width) == 1:
            return f"floor({expr.column})"
        return f"floor({expr.column} / {expr.width})"
    if isinstance(expr, WidthBucket):
        return f"width_bucket({expr.column}, {expr.low}, {expr.high}, {expr.count})"
    return "case"


def group_to_sqlglot(expr: GroupExpr) -> exp.Expression:
    """The canonical sqlglot form of a group expression (for the canonical SQL)."""
    if isinstance(expr, GroupColumn):
        return exp.Column(this=exp.to_identifier(expr.column, quoted=True))
    if isinstance(expr, FloorBucket):
        col = exp.Column(this=exp.to_identifier(expr.column, quoted=True))
        arg: exp.Expression = col
        if Decimal(expr.width) != 1:
            arg = exp.Div(this=col, expression=exp.Literal.number(expr.width))
        return exp.Floor(this=arg)
    if isinstance(expr, WidthBucket):
        return exp.WidthBucket(
            this=exp.Column(this=exp.to_identifier(expr.column, quoted=True)),
            min_value=to_sqlglot(NumberLiteral(expr.low)),
            max_value=to_sqlglot(NumberLiteral(expr.high)),
            num_buckets=exp.Literal.number(expr.count),
        )
    return exp.Case(
        ifs=[
            exp.If(this=to_sqlglot(p), true=exp.Literal.string(label)) for p, label in expr.branches
        ],
        default=exp.Literal.string(expr.default) if expr.default is not None else None,
    )
