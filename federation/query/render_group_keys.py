"""Write a GROUP BY key: the DuckDB SQL of its value for one row (:func:`group_sql`),
its default output name (:func:`group_name`) and its canonical sqlglot form
(:func:`group_to_sqlglot`), from the checked AST (quoted identifiers, exact literals).
"""

from __future__ import annotations

from decimal import Decimal

from sqlglot import exp

from federation.query.expr import NumberLiteral
from federation.query.group_exprs import FloorBucket, GroupColumn, GroupExpr, GroupKey, WidthBucket
from federation.query.where import render_predicate, to_sqlglot
from federation.query.width_buckets import width_bucket_sql

__all__ = ["group_name", "group_sql", "group_to_sqlglot", "quote"]


def _double(text: str) -> str:
    """An exact DOUBLE literal of a decimal text (DuckDB's string cast rounds correctly)."""
    return f"CAST('{float(text)!r}' AS DOUBLE)"


def quote(name: str) -> str:
    """A quoted DuckDB identifier."""
    return '"' + name.replace('"', '""') + '"'


def group_sql(key: GroupKey) -> str:
    """The DuckDB expression of a key's value for one row (NULL for the NULL group)."""
    e = key.expression
    if isinstance(e, GroupColumn):
        return quote(e.column)
    if isinstance(e, FloorBucket):
        value = f"CAST({quote(e.column)} AS DOUBLE)"
        if Decimal(e.width) == 1:
            return f"floor({value})"
        return f"floor({value} / {_double(e.width)})"
    if isinstance(e, WidthBucket):
        x = f"CAST({quote(e.column)} AS DOUBLE)"
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
