"""Render a bound query as canonical DuckDB SQL (:attr:`BoundQuery.canonical_sql`).

The text is the computation an operator approves and the audit log records, written
from the checked query: identifiers quoted, arithmetic and connectives parenthesized,
ORDER BY keys as output positions. The fingerprint is hashed from the bound
dataclasses, not from this text (:mod:`federation.query.bind`).
"""

from __future__ import annotations

from sqlglot import exp

from federation.query.bound import BoundOrder, OutputColumn
from federation.query.expr import ComparisonOp, Expr, LogicalOp
from federation.query.groups import GroupKey, group_to_sqlglot
from federation.query.outputs import (
    Aggregate,
    Binary,
    BinaryOp,
    Compare,
    Connective,
    Grouping,
    InSet,
    Negation,
    Negative,
    Null,
    NullTest,
    Number,
    OutputRef,
    Range,
    RowBinary,
    RowColumn,
    RowExp,
    RowExpr,
    RowNegative,
    RowNumber,
    Text,
    ValueExpr,
)
from federation.query.where import to_sqlglot

__all__ = ["render_canonical_sql", "row_to_sqlglot"]


def _identifier(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


_BINARY_NODE: dict[BinaryOp, type[exp.Expression]] = {
    BinaryOp.ADD: exp.Add,
    BinaryOp.SUB: exp.Sub,
    BinaryOp.MUL: exp.Mul,
    BinaryOp.DIV: exp.Div,
}
_COMPARE_NODE: dict[ComparisonOp, type[exp.Expression]] = {
    ComparisonOp.EQ: exp.EQ,
    ComparisonOp.NEQ: exp.NEQ,
    ComparisonOp.LT: exp.LT,
    ComparisonOp.LTE: exp.LTE,
    ComparisonOp.GT: exp.GT,
    ComparisonOp.GTE: exp.GTE,
}


def row_to_sqlglot(expr: RowExpr) -> exp.Expression:
    """The canonical sqlglot form of a per-row expression."""
    match expr:
        case RowColumn(name):
            return exp.Column(this=_identifier(name))
        case RowNumber(text):
            return exp.Literal.number(text)
        case RowBinary(op, a, b):
            node = _BINARY_NODE[op]
            return exp.Paren(this=node(this=row_to_sqlglot(a), expression=row_to_sqlglot(b)))
        case RowNegative(x):
            return exp.Neg(this=exp.Paren(this=row_to_sqlglot(x)))
        case RowExp(x):
            return exp.Exp(this=row_to_sqlglot(x))


def _value_sql(expr: ValueExpr) -> exp.Expression:  # noqa: PLR0911, PLR0912 - one case per node type
    """The canonical sqlglot form of a select item or HAVING expression."""
    match expr:
        case Aggregate(function, _, _, operand) if operand is not None:
            return exp.Anonymous(this=function.value, expressions=[row_to_sqlglot(operand)])
        case Aggregate(function, column, column2):
            args: list[exp.Expression] = [
                exp.Star() if column is None else exp.Column(this=_identifier(column))
            ]
            if column2 is not None and not function.bivariate:
                args = [exp.Mul(this=args[0], expression=exp.Column(this=_identifier(column2)))]
            elif column2 is not None:
                args.append(exp.Column(this=_identifier(column2)))
            return exp.Anonymous(this=function.value, expressions=args)
        case Number(text):
            return exp.Literal.number(text)
        case Text(value):
            return exp.Literal.string(value)
        case Null():
            return exp.Null()
        case Negative(x):
            return exp.Neg(this=exp.Paren(this=_value_sql(x)))
        case Binary(arith, a, b):
            node = _BINARY_NODE[arith]
            return exp.Paren(this=node(this=_value_sql(a), expression=_value_sql(b)))
        case Compare(cmp, a, b):
            return _COMPARE_NODE[cmp](this=_value_sql(a), expression=_value_sql(b))
        case Connective(logical, a, b):
            conn = exp.And if logical is LogicalOp.AND else exp.Or
            return exp.Paren(this=conn(this=_value_sql(a), expression=_value_sql(b)))
        case Negation(x):
            return exp.Not(this=exp.Paren(this=_value_sql(x)))
        case NullTest(x, negated):
            test: exp.Expression = exp.Is(this=_value_sql(x), expression=exp.Null())
            return exp.Not(this=test) if negated else test
        case Range(x, lo, hi, negated):
            between: exp.Expression = exp.Between(
                this=_value_sql(x), low=_value_sql(lo), high=_value_sql(hi)
            )
            return exp.Not(this=exp.Paren(this=between)) if negated else between
        case InSet(x, values, negated):
            member: exp.Expression = exp.In(
                this=_value_sql(x), expressions=[_value_sql(v) for v in values]
            )
            return exp.Not(this=exp.Paren(this=member)) if negated else member
        case OutputRef(name):
            return exp.Column(this=_identifier(name))
        case Grouping(keys):
            return exp.Grouping(expressions=[group_to_sqlglot(k) for k in keys])
        case _:
            return group_to_sqlglot(expr)


def render_canonical_sql(
    *,
    dataset: str,
    outputs: tuple[OutputColumn, ...],
    where: Expr | None,
    group_keys: tuple[GroupKey, ...],
    sets: tuple[tuple[int, ...], ...] | None,
    having: ValueExpr | None,
    order_by: tuple[BoundOrder, ...],
    limit: int | None,
    offset: int | None,
) -> str:
    """The canonical DuckDB SQL of a bound query."""
    items: list[exp.Expression] = [
        exp.Alias(this=_value_sql(out.source), alias=_identifier(out.name)) for out in outputs
    ]
    select = exp.select(*items).from_(exp.Table(this=_identifier(dataset)))
    if where is not None:
        select = select.where(to_sqlglot(where))
    keys = [group_to_sqlglot(k.expression) for k in group_keys]
    if sets is not None:
        specs = [exp.Tuple(expressions=[keys[k].copy() for k in s]) for s in sets]
        select = select.group_by(exp.GroupingSets(expressions=specs))
    elif keys:
        select = select.group_by(*keys)
    if having is not None:
        select = select.having(_value_sql(having))
    if order_by:
        select = select.order_by(
            *(
                exp.Ordered(
                    this=exp.Literal.number(o.index + 1),
                    desc=o.descending,
                    nulls_first=o.nulls_first,
                )
                for o in order_by
            )
        )
    if limit is not None:
        select = select.limit(exp.Literal.number(limit))
    if offset is not None:
        select = select.offset(exp.Literal.number(offset))
    return select.sql(dialect="duckdb")
