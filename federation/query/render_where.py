"""Write a (bound) predicate back as SQL through sqlglot's generator (:func:`to_sqlglot`,
:func:`render_predicate`): every identifier quoted, every literal escaped and every
composite operand parenthesized.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlglot import exp

from federation.query.expr import (
    Arithmetic,
    Between,
    BooleanLiteral,
    ColumnRef,
    Comparison,
    Expr,
    FunctionCall,
    InList,
    IsNull,
    Like,
    Logical,
    LogicalOp,
    Negate,
    Not,
    NullLiteral,
    NumberLiteral,
    StringLiteral,
)
from federation.query.predicate_ops import ARITHMETIC, COMPARISON, FUNCTIONS

__all__ = ["render_predicate", "to_sqlglot"]

_ARITH_NODE = {v: k for k, v in ARITHMETIC.items()}
_CMP_NODE = {v: k for k, v in COMPARISON.items()}
_FUNC_NODE = {v: k for k, v in FUNCTIONS.items()}


def _wrap(node: exp.Expression) -> exp.Expression:
    atomic = exp.Column | exp.Literal | exp.Boolean | exp.Null | exp.Paren | exp.Anonymous
    if isinstance(node, atomic) or type(node) in FUNCTIONS:
        return node
    return exp.Paren(this=node)


def _sub(expr: Expr) -> exp.Expression:
    return _wrap(to_sqlglot(expr))


def _negated(node: exp.Expression, negated: bool) -> exp.Expression:
    return exp.Not(this=exp.Paren(this=node)) if negated else node


def to_sqlglot(expr: Expr) -> exp.Expression:
    """The sqlglot tree of a predicate; every composite operand is parenthesized."""
    if isinstance(expr, ColumnRef):
        return exp.Column(this=exp.to_identifier(expr.name, quoted=True))
    if isinstance(expr, NumberLiteral):
        return exp.Literal.number(expr.text)
    if isinstance(expr, StringLiteral):
        return exp.Literal.string(expr.value)
    if isinstance(expr, BooleanLiteral):
        return exp.Boolean(this=expr.value)
    if isinstance(expr, NullLiteral):
        return exp.Null()
    return _RENDERERS[type(expr)](expr)


def _render_between(e: Between) -> exp.Expression:
    node = exp.Between(this=_sub(e.operand), low=_sub(e.low), high=_sub(e.high))
    return _negated(node, e.negated)


def _render_like(e: Like) -> exp.Expression:
    cls = exp.ILike if e.case_insensitive else exp.Like
    return _negated(cls(this=_sub(e.operand), expression=exp.Literal.string(e.pattern)), e.negated)


_RENDERERS: dict[type, Callable[..., exp.Expression]] = {
    Negate: lambda e: exp.Neg(this=_sub(e.operand)),
    Arithmetic: lambda e: _ARITH_NODE[e.op](this=_sub(e.left), expression=_sub(e.right)),
    Comparison: lambda e: _CMP_NODE[e.op](this=_sub(e.left), expression=_sub(e.right)),
    Logical: lambda e: (exp.And if e.op is LogicalOp.AND else exp.Or)(
        this=_sub(e.left), expression=_sub(e.right)
    ),
    Not: lambda e: exp.Not(this=_sub(e.operand)),
    IsNull: lambda e: _negated(exp.Is(this=_sub(e.operand), expression=exp.Null()), e.negated),
    InList: lambda e: _negated(
        exp.In(this=_sub(e.operand), expressions=[_sub(v) for v in e.values]), e.negated
    ),
    Between: _render_between,
    Like: _render_like,
    FunctionCall: lambda e: _FUNC_NODE[e.function](this=to_sqlglot(e.args[0])),
}


def render_predicate(expr: Expr) -> str:
    """DuckDB SQL for a (bound) predicate."""
    return to_sqlglot(expr).sql(dialect="duckdb")
