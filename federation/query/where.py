"""The WHERE clause: sqlglot tree -> checked predicate AST -> DuckDB SQL.

:func:`predicate_from_sqlglot` accepts only the node types of
:mod:`federation.query.expr` (refusing subqueries, aggregates, unknown functions, ...);
:func:`~federation.query.bind_where.bind_predicate` checks columns and types against a
schema; :func:`~federation.query.render_where.to_sqlglot` and
:func:`~federation.query.render_where.render_predicate` build the SQL back through
sqlglot's generator, with every identifier quoted, every literal escaped and every
composite operand parenthesized, so no text of the analyst's query is ever pasted into SQL.

This module converts the sqlglot tree (:func:`predicate_from_sqlglot`, and
:func:`column_name` for any column reference); the binding is in
:mod:`federation.query.bind_where`, the rendering in :mod:`federation.query.render_where`,
and the operators' sqlglot node classes, which both conversions use, in
:mod:`federation.query.predicate_ops`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from typing import ClassVar

from sqlglot import exp

from federation.errors import UnsupportedQueryError
from federation.query.bind_where import bind_predicate
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
    ScalarFunction,
    StringLiteral,
)
from federation.query.predicate_ops import ARITHMETIC, COMPARISON, FUNCTIONS
from federation.query.render_where import render_predicate, to_sqlglot

__all__ = [
    "bind_predicate",
    "column_name",
    "predicate_from_sqlglot",
    "render_predicate",
    "to_sqlglot",
]


def column_name(node: exp.Column, table_names: frozenset[str]) -> str:
    """The name of a column reference, checking its optional table qualifier.

    Raises:
        UnsupportedQueryError: ``t.*``, a schema-qualified name, or a qualifier that is
            not the FROM table or its alias.
    """
    if not isinstance(node.this, exp.Identifier):
        raise UnsupportedQueryError("'*' can only appear as COUNT(*)")
    if node.args.get("db") or node.args.get("catalog"):
        raise UnsupportedQueryError(
            f"column reference {node.sql()!r} is qualified with a schema; write the column name"
        )
    qualifier = node.table
    if qualifier and qualifier.lower() not in table_names:
        raise UnsupportedQueryError(
            f"column {node.name!r} is qualified with {qualifier!r}, which is not the FROM table"
        )
    return str(node.this.this)


def _number(text: str) -> NumberLiteral:
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise UnsupportedQueryError(f"numeric literal {text!r} is not a decimal number") from None
    if not value.is_finite() or not math.isfinite(float(value)):
        raise UnsupportedQueryError(
            f"numeric literal {text!r} is outside the range of a double; use a finite number"
        )
    return NumberLiteral(text)


def predicate_from_sqlglot(node: exp.Expression, table_names: frozenset[str]) -> Expr:
    """Convert a sqlglot predicate tree, refusing anything outside the whitelist.

    Args:
        node: The sqlglot expression (e.g. the ``this`` of a WHERE).
        table_names: Lower-cased names a column may be qualified with (table, alias).

    Raises:
        UnsupportedQueryError: A node type, function or construct is not supported.
    """
    return _Converter(table_names).convert(node)


class _Converter:
    def __init__(self, table_names: frozenset[str]) -> None:
        self.table_names = table_names

    def convert(self, node: exp.Expression) -> Expr:
        kind = type(node)
        if kind in ARITHMETIC:
            return Arithmetic(
                ARITHMETIC[kind], self.convert(node.this), self.convert(node.expression)
            )
        if kind in COMPARISON:
            return Comparison(
                COMPARISON[kind], self.convert(node.this), self.convert(node.expression)
            )
        if kind in FUNCTIONS:
            return self._function(node)
        handler = self._HANDLERS.get(kind)
        if handler is None:
            raise _refusal(node)
        return handler(self, node)

    def _paren(self, node: exp.Expression) -> Expr:
        return self.convert(node.this)

    def _column(self, node: exp.Column) -> Expr:
        return ColumnRef(column_name(node, self.table_names))

    def _literal(self, node: exp.Expression) -> Expr:
        return StringLiteral(node.this) if node.is_string else _number(node.this)

    def _boolean(self, node: exp.Expression) -> Expr:
        return BooleanLiteral(bool(node.this))

    def _null(self, node: exp.Expression) -> Expr:
        return NullLiteral()

    def _neg(self, node: exp.Expression) -> Expr:
        return Negate(self.convert(node.this))

    def _logical(self, node: exp.Expression) -> Expr:
        op = LogicalOp.AND if isinstance(node, exp.And) else LogicalOp.OR
        return Logical(op, self.convert(node.this), self.convert(node.expression))

    def _not(self, node: exp.Expression) -> Expr:
        inner = node.this
        while isinstance(inner, exp.Paren):
            inner = inner.this
        negatable: dict[type[exp.Expression], Callable[[_Converter, exp.Expression, bool], Expr]]
        negatable = {
            exp.Is: _Converter._is,
            exp.In: _Converter._in,
            exp.Between: _Converter._between,
            exp.Like: _Converter._like,
            exp.ILike: _Converter._like,
        }
        handler = negatable.get(type(inner))
        if handler is not None and not inner.args.get("negate"):
            return handler(self, inner, True)
        return Not(self.convert(inner))

    def _is(self, node: exp.Expression, negated: bool = False) -> Expr:
        if not isinstance(node.expression, exp.Null):
            raise UnsupportedQueryError(
                "only IS NULL and IS NOT NULL are supported; compare with = for other values"
            )
        return IsNull(self.convert(node.this), negated)

    def _in(self, node: exp.Expression, negated: bool = False) -> Expr:
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise UnsupportedQueryError("IN takes a list of literal values, not a subquery")
        values = tuple(self.convert(v) for v in node.expressions)
        if not values:
            raise UnsupportedQueryError("IN needs at least one value")
        return InList(self.convert(node.this), values, negated)

    def _between(self, node: exp.Expression, negated: bool = False) -> Expr:
        if node.args.get("symmetric"):
            raise UnsupportedQueryError("BETWEEN SYMMETRIC is not supported")
        low, high = node.args["low"], node.args["high"]
        return Between(self.convert(node.this), self.convert(low), self.convert(high), negated)

    def _like(self, node: exp.Expression, negated: bool = False) -> Expr:
        if node.args.get("escape"):
            raise UnsupportedQueryError("LIKE ... ESCAPE is not supported")
        pattern = node.expression
        if not (isinstance(pattern, exp.Literal) and pattern.is_string):
            raise UnsupportedQueryError("the pattern of LIKE must be a string literal")
        negated = negated or bool(node.args.get("negate"))
        return Like(self.convert(node.this), pattern.this, negated, isinstance(node, exp.ILike))

    def _function(self, node: exp.Expression) -> Expr:
        func = FUNCTIONS[type(node)]
        if any(v for k, v in node.args.items() if k != "this"):
            raise UnsupportedQueryError(f"{func.value.upper()} takes exactly one argument")
        return FunctionCall(func, (self.convert(node.this),))

    _HANDLERS: ClassVar[dict[type[exp.Expression], Callable[..., Expr]]] = {
        exp.Paren: _paren,
        exp.Column: _column,
        exp.Literal: _literal,
        exp.Boolean: _boolean,
        exp.Null: _null,
        exp.Neg: _neg,
        exp.And: _logical,
        exp.Or: _logical,
        exp.Not: _not,
        exp.Is: _is,
        exp.In: _in,
        exp.Between: _between,
        exp.Like: _like,
        exp.ILike: _like,
    }


def _refusal(node: exp.Expression) -> UnsupportedQueryError:
    if isinstance(node, exp.Subquery | exp.Select | exp.Exists):
        return UnsupportedQueryError("subqueries are not supported")
    if isinstance(node, exp.AggFunc | exp.Window):
        return UnsupportedQueryError(
            "aggregates and window functions are not allowed in WHERE (it filters rows); "
            "put aggregates in the SELECT list"
        )
    if isinstance(node, exp.Func):
        name = str(node.this) if isinstance(node, exp.Anonymous) else node.sql_name()
        allowed = ", ".join(f.value.upper() for f in ScalarFunction)
        return UnsupportedQueryError(
            f"function {name.upper()} is not supported in WHERE; the supported functions "
            f"are {allowed}"
        )
    if isinstance(node, exp.Placeholder | exp.Parameter):
        return UnsupportedQueryError("query parameters are not supported; inline the values")
    return UnsupportedQueryError(
        f"{node.key.upper()} expressions are not supported in WHERE; use comparisons, "
        "AND/OR/NOT, IN, BETWEEN, IS [NOT] NULL, LIKE and arithmetic"
    )
