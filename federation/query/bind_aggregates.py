"""Bind aggregate calls to a schema and derive the exact sums the vector holds for them.

:func:`bind_aggregate` checks an aggregate's columns and gives its output kind;
:func:`vector_aggregations` lists the per-column sums (counts, sums, sums of squares,
pair statistics) and cross products the used aggregates need, and
:func:`pair_keys` and :func:`product_fields` find them again when finalizing.
A ``SUM(expr)`` sums a derived DOUBLE value computed per row (:func:`row_sql`).
"""

from __future__ import annotations

import hashlib
from dataclasses import replace

from federation.encoding import fixed_point_format
from federation.errors import QueryTypeError
from federation.query.bound import BoundQuery
from federation.query.canonical import row_to_sqlglot
from federation.query.layout import ColumnAggregation, FieldKind, ProductAggregation
from federation.query.outputs import (
    Aggregate,
    AggregateFunction,
    RowBinary,
    RowColumn,
    RowExp,
    RowExpr,
    RowNegative,
    RowNumber,
)
from federation.schema import Column, ColumnType, DatasetSchema
from federation.table import ColumnKind

__all__ = [
    "bind_aggregate",
    "pair_keys",
    "product_fields",
    "row_columns",
    "row_sql",
    "vector_aggregations",
]

_NEEDS_SUM = frozenset(AggregateFunction) - {AggregateFunction.COUNT}
_NEEDS_SQUARES = frozenset(
    {
        AggregateFunction.VAR_SAMP,
        AggregateFunction.VAR_POP,
        AggregateFunction.STDDEV_SAMP,
        AggregateFunction.STDDEV_POP,
    }
)
# Bivariate f(y, x): which of Σy² and Σx² (over the pairs) each needs.
_NEEDS_Y_SQUARES = frozenset({AggregateFunction.CORR, AggregateFunction.REGR_R2})
_NEEDS_X_SQUARES = _NEEDS_Y_SQUARES | {
    AggregateFunction.REGR_SLOPE,
    AggregateFunction.REGR_INTERCEPT,
}


def _bind_row(schema: DatasetSchema, expr: RowExpr) -> RowExpr:
    """Check a per-row expression's columns (numeric) and spell them as the schema does."""
    match expr:
        case RowColumn(name):
            col = schema.column(name)
            if not col.is_numeric:
                raise QueryTypeError(
                    f"a per-row expression inside SUM needs numeric columns, but {col.name!r} "
                    f"is {col.type.value}"
                )
            return RowColumn(col.name)
        case RowNumber():
            return expr
        case RowBinary(op, a, b):
            return RowBinary(op, _bind_row(schema, a), _bind_row(schema, b))
        case RowNegative(x):
            return RowNegative(_bind_row(schema, x))
        case RowExp(x):
            return RowExp(_bind_row(schema, x))


def row_sql(expr: RowExpr) -> str:
    """DuckDB SQL computing a per-row expression in DOUBLE arithmetic.

    Every column is cast to DOUBLE and every literal is the correctly rounded double of
    its decimal text, so the value is the same IEEE computation on every node.
    """
    match expr:
        case RowColumn(name):
            return f'CAST("{name}" AS DOUBLE)'
        case RowNumber(text):
            return f"CAST('{text}' AS DOUBLE)"
        case RowBinary(op, a, b):
            return f"({row_sql(a)} {op.value} {row_sql(b)})"
        case RowNegative(x):
            return f"(-{row_sql(x)})"
        case RowExp(x):
            return f"exp({row_sql(x)})"


def _row_columns(expr: RowExpr) -> list[str]:
    match expr:
        case RowColumn(name):
            return [name]
        case RowNumber():
            return []
        case RowBinary(_, a, b):
            return _row_columns(a) + _row_columns(b)
        case RowNegative(x) | RowExp(x):
            return _row_columns(x)


def row_columns(expr: RowExpr) -> list[str]:
    """The columns a per-row expression reads, without repeats."""
    return list(dict.fromkeys(_row_columns(expr)))


def _derived_key(operand: RowExpr) -> str:
    """The field key of ``SUM(expr)``'s derived value (a hash of the bound expression)."""
    return "expr_" + hashlib.sha256(repr(operand).encode()).hexdigest()[:16]


def bind_aggregate(schema: DatasetSchema, agg: Aggregate) -> tuple[Aggregate, ColumnKind]:  # noqa: PLR0911 - per aggregate kind
    """``agg`` with its columns checked and spelled as the schema does, and its kind."""
    if agg.operand is not None:
        operand = _bind_row(schema, agg.operand)
        return Aggregate(agg.function, _derived_key(operand), operand=operand), ColumnKind.DOUBLE
    if agg.column is None:
        return agg, ColumnKind.INTEGER
    col = schema.column(agg.column)
    if agg.function is AggregateFunction.SUM and agg.column2 is not None:
        other = schema.column(agg.column2)
        for c in (col, other):
            if not c.is_numeric:
                raise QueryTypeError(
                    f"SUM({col.name} * {other.name}) needs numeric columns, but {c.name!r} "
                    f"is {c.type.value}"
                )
        both_integer = col.type.value == "integer" and other.type.value == "integer"
        kind = ColumnKind.INTEGER if both_integer else ColumnKind.DOUBLE
        return Aggregate(agg.function, col.name, other.name), kind
    if agg.function.bivariate:
        assert agg.column2 is not None
        other = schema.column(agg.column2)
        for c in (col, other):
            if not c.is_numeric:
                raise QueryTypeError(
                    f"{agg.function.value.upper()}({col.name}, {other.name}) needs numeric "
                    f"columns, but {c.name!r} is {c.type.value}"
                )
        return Aggregate(agg.function, col.name, other.name), ColumnKind.DOUBLE
    bound = Aggregate(agg.function, col.name)
    if agg.function is AggregateFunction.COUNT:
        return bound, ColumnKind.INTEGER
    if not col.is_numeric:
        raise QueryTypeError(
            f"{agg.function.value.upper()}({col.name}) needs a numeric column, but "
            f"{col.name!r} is {col.type.value}; count it with COUNT({col.name})"
            + (" or group by it" if col.type.value == "categorical" else "")
        )
    if agg.function is AggregateFunction.SUM and col.type.value == "integer":
        return bound, ColumnKind.INTEGER
    return bound, ColumnKind.DOUBLE


def pair_keys(
    schema: DatasetSchema, products: tuple[ProductAggregation, ...], agg: Aggregate
) -> tuple[str, str, str]:
    """For a bound bivariate ``f(y, x)``: the field keys of y's and x's pair statistics
    and of the cross product (``"y|x"``, ``"x|y"``, ``"a*b"``)."""
    y, x = agg.column, agg.column2
    assert y is not None
    assert x is not None
    for p in products:
        if (p.left.name, p.right.name) in ((y, x), (x, y)):
            return f"{y}|{x}", f"{x}|{y}", p.key
    raise KeyError((y, x))


def product_fields(bound: BoundQuery, agg: Aggregate) -> tuple[str, tuple[FieldKind, str], int]:
    """For a bound ``SUM(a * b)``: the COUNT key of its rows (both non-NULL), the field
    holding the exact ``ΣAB`` and its fraction bits (the value is ``field / 2**bits``).

    ``SUM(a * a)`` reads ``ΣA²`` (:attr:`FieldKind.SUM_SQUARES` of ``a``).
    """
    a, b = agg.column, agg.column2
    assert a is not None
    assert b is not None
    bits = sum(fixed_point_format(bound.schema.column(c)).fraction_bits for c in (a, b))
    if a == b:
        return a, (FieldKind.SUM_SQUARES, a), bits
    for p in bound.products:
        if (p.left.name, p.right.name) in ((a, b), (b, a)):
            return f"{a}|{b}", (FieldKind.SUM_PRODUCTS, p.key), bits
    raise KeyError((a, b))


def vector_aggregations(
    schema: DatasetSchema, used: list[Aggregate]
) -> tuple[tuple[ColumnAggregation, ...], tuple[ProductAggregation, ...]]:
    """The column and product aggregations of the vector for the bound aggregates ``used``."""
    needs: dict[tuple[str, str | None], tuple[bool, bool]] = {}
    pairs: dict[frozenset[str], tuple[str, str]] = {}

    def need(column: str, mask: str | None, total: bool, squares: bool) -> None:
        s, q = needs.get((column, mask), (False, False))
        needs[(column, mask)] = (s or total, q or squares)

    derived: dict[str, ColumnAggregation] = {}
    for agg in used:
        if agg.column is None:
            continue
        if agg.operand is not None:  # SUM(expr): a derived DOUBLE value per row
            column = Column(agg.column, ColumnType.DOUBLE)
            text = row_to_sqlglot(agg.operand).sql(dialect="duckdb")
            value_format = replace(fixed_point_format(column), column=f"expression {text}")
            derived[agg.column] = ColumnAggregation(
                column,
                value_format,
                True,
                False,
                expression=row_sql(agg.operand),
                reads=tuple(row_columns(agg.operand)),
            )
            continue
        if agg.column2 is not None and not agg.function.bivariate:  # SUM(a * b)
            first, second = agg.column, agg.column2
            if first == second:
                need(first, None, True, True)
            else:
                need(first, second, False, False)  # the count of rows where both are non-NULL
                pairs.setdefault(frozenset((first, second)), (first, second))
            continue
        if agg.function.bivariate:
            assert agg.column2 is not None
            y, x = agg.column, agg.column2
            need(y, x, True, agg.function in _NEEDS_Y_SQUARES)
            need(x, y, True, agg.function in _NEEDS_X_SQUARES)
            pairs.setdefault(frozenset((y, x)), (y, x))
            continue
        need(agg.column, None, agg.function in _NEEDS_SUM, agg.function in _NEEDS_SQUARES)
    result = []
    for (name, mask), (need_sum, need_squares) in needs.items():
        col = schema.column(name)
        fmt = fixed_point_format(col) if col.is_numeric else None
        mask_col = schema.column(mask) if mask is not None else None
        result.append(ColumnAggregation(col, fmt, need_sum, need_squares, mask_col))
    result += derived.values()
    products = []
    for left, right in pairs.values():
        a, b = schema.column(left), schema.column(right)
        products.append(ProductAggregation(a, b, fixed_point_format(a), fixed_point_format(b)))
    return tuple(result), tuple(products)
