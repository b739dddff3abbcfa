"""Parse a HAVING condition over aggregates, GROUP BY keys, output aliases and literals.

The condition may use comparisons, AND/OR/NOT, IS [NOT] NULL, [NOT] BETWEEN and
[NOT] IN; its aggregates and ``GROUPING(keys)`` are parsed as select items are
(:mod:`federation.query.parse_items`). Names are resolved when binding.
"""

from __future__ import annotations

from sqlglot import exp

from federation.errors import UnsupportedQueryError
from federation.query.expr import ComparisonOp, LogicalOp
from federation.query.groups import group_expr_from_sqlglot
from federation.query.outputs import (
    Binary,
    Compare,
    Connective,
    InSet,
    Negation,
    Negative,
    Null,
    NullTest,
    OutputRef,
    Range,
    Text,
    ValueExpr,
)
from federation.query.parse_items import BINARY_OPS, ItemParser

__all__ = ["HavingParser"]

_COMPARISON: dict[type[exp.Expression], ComparisonOp] = {
    exp.EQ: ComparisonOp.EQ,
    exp.NEQ: ComparisonOp.NEQ,
    exp.LT: ComparisonOp.LT,
    exp.LTE: ComparisonOp.LTE,
    exp.GT: ComparisonOp.GT,
    exp.GTE: ComparisonOp.GTE,
}


class HavingParser:
    """Parses HAVING conditions; ``values`` parses their aggregates and group keys."""

    def __init__(self, values: ItemParser) -> None:
        self.values = values

    def _operand(self, node: exp.Expression) -> ValueExpr:  # noqa: PLR0911 - per node type
        """A HAVING operand: arithmetic on aggregates, a group key, an alias or a literal."""
        while isinstance(node, exp.Paren):
            node = node.this
        kind = type(node)
        if kind in BINARY_OPS:
            return Binary(
                BINARY_OPS[kind], self._operand(node.this), self._operand(node.expression)
            )
        if isinstance(node, exp.Neg):
            return Negative(self._operand(node.this))
        if isinstance(node, exp.Literal):
            return Text(str(node.this)) if node.is_string else self.values.number(node)
        if isinstance(node, exp.Null):
            return Null()
        if isinstance(node, exp.Column):
            return OutputRef(self.values.column(node))
        if isinstance(node, exp.Grouping | exp.GroupingId):
            return self.values.grouping(node)
        group = group_expr_from_sqlglot(node, self.values.table_names)
        if group is not None:
            return group
        aggregate = self.values.aggregate(node)
        if aggregate is not None:
            return aggregate
        raise UnsupportedQueryError(
            f"{node.sql()!r} is not supported in HAVING; compare aggregates, GROUP BY keys, "
            "output aliases and literals"
        )

    def condition(self, node: exp.Expression) -> ValueExpr:  # noqa: PLR0911 - per node type
        """A HAVING predicate."""
        while isinstance(node, exp.Paren):
            node = node.this
        kind = type(node)
        if kind in _COMPARISON:
            return Compare(
                _COMPARISON[kind], self._operand(node.this), self._operand(node.expression)
            )
        if isinstance(node, exp.And | exp.Or):
            op = LogicalOp.AND if isinstance(node, exp.And) else LogicalOp.OR
            return Connective(op, self.condition(node.this), self.condition(node.expression))
        if isinstance(node, exp.Not):
            inner = node.this
            while isinstance(inner, exp.Paren):
                inner = inner.this
            if isinstance(inner, exp.Is):
                return self._is_null(inner, negated=True)
            if isinstance(inner, exp.In):
                return self._in(inner, negated=True)
            if isinstance(inner, exp.Between):
                return self._between(inner, negated=True)
            return Negation(self.condition(inner))
        if isinstance(node, exp.Is):
            return self._is_null(node, negated=False)
        if isinstance(node, exp.In):
            return self._in(node, negated=False)
        if isinstance(node, exp.Between):
            return self._between(node, negated=False)
        raise UnsupportedQueryError(
            f"HAVING {node.sql()!r} is not supported; use comparisons, AND/OR/NOT, "
            "IS [NOT] NULL, [NOT] BETWEEN and [NOT] IN on aggregates, GROUP BY keys and aliases"
        )

    def _is_null(self, node: exp.Is, *, negated: bool) -> ValueExpr:
        if not isinstance(node.expression, exp.Null):
            raise UnsupportedQueryError("HAVING supports IS [NOT] NULL only")
        return NullTest(self._operand(node.this), negated)

    def _in(self, node: exp.In, *, negated: bool) -> ValueExpr:
        if node.args.get("query") or node.args.get("unnest") or node.args.get("field"):
            raise UnsupportedQueryError("IN in HAVING takes a list of literals only")
        values = tuple(self._operand(v) for v in node.expressions)
        return InSet(self._operand(node.this), values, negated)

    def _between(self, node: exp.Between, *, negated: bool) -> ValueExpr:
        low = node.args.get("low")
        high = node.args.get("high")
        if low is None or high is None:
            raise UnsupportedQueryError("BETWEEN needs a lower and an upper bound")
        return Range(self._operand(node.this), self._operand(low), self._operand(high), negated)
