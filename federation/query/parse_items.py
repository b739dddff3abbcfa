"""Parse a select item: an aggregate call, arithmetic on aggregates, a GROUP BY key or
``GROUPING(keys)`` (syntax only; :mod:`federation.query.bind_clauses` checks names and
types).

Its aggregate calls (with the per-row expression of ``SUM(expr)``), numeric literals
and ``GROUPING(keys)`` are also the leaves of a HAVING condition
(:mod:`federation.query.parse_having`).
"""

from __future__ import annotations

import math
from decimal import Decimal

from sqlglot import exp

from federation.errors import NonAggregateQueryError, UnsupportedQueryError
from federation.query.groups import GroupExpr, group_expr_from_sqlglot
from federation.query.outputs import (
    Aggregate,
    AggregateFunction,
    Binary,
    BinaryOp,
    Grouping,
    Negative,
    Number,
    RowBinary,
    RowColumn,
    RowExp,
    RowExpr,
    RowNegative,
    RowNumber,
    ValueExpr,
)
from federation.query.where import column_name

__all__ = [
    "BINARY_OPS",
    "MAX_GROUPING_ARGUMENTS",
    "SUPPORTED_AGGREGATES",
    "ItemParser",
    "SelectExpr",
    "literal_int",
]

SelectExpr = Aggregate | GroupExpr | Grouping | Negative | Binary
"""What a select item computes: an aggregate, a GROUP BY key, ``GROUPING(keys)``, or
arithmetic on aggregates."""

MAX_GROUPING_ARGUMENTS = 64
"""The most keys ``GROUPING(...)`` takes (as DuckDB)."""

_AGGREGATES: dict[type[exp.Expression], AggregateFunction] = {
    exp.Count: AggregateFunction.COUNT,
    exp.Sum: AggregateFunction.SUM,
    exp.Avg: AggregateFunction.AVG,
    exp.Variance: AggregateFunction.VAR_SAMP,
    exp.VariancePop: AggregateFunction.VAR_POP,
    exp.Stddev: AggregateFunction.STDDEV_SAMP,
    exp.StddevSamp: AggregateFunction.STDDEV_SAMP,
    exp.StddevPop: AggregateFunction.STDDEV_POP,
    exp.Corr: AggregateFunction.CORR,
    exp.CovarSamp: AggregateFunction.COVAR_SAMP,
    exp.CovarPop: AggregateFunction.COVAR_POP,
    exp.RegrSlope: AggregateFunction.REGR_SLOPE,
    exp.RegrIntercept: AggregateFunction.REGR_INTERCEPT,
    exp.RegrR2: AggregateFunction.REGR_R2,
}
_ANONYMOUS_AGGREGATES = {
    "mean": AggregateFunction.AVG,
    "var_samp": AggregateFunction.VAR_SAMP,
    "variance": AggregateFunction.VAR_SAMP,
    "var_pop": AggregateFunction.VAR_POP,
    "stddev": AggregateFunction.STDDEV_SAMP,
    "stddev_samp": AggregateFunction.STDDEV_SAMP,
    "stddev_pop": AggregateFunction.STDDEV_POP,
    **{f.value: f for f in AggregateFunction if f.bivariate},
}
SUPPORTED_AGGREGATES = (
    "COUNT(*), COUNT(col), SUM, AVG, VAR_SAMP, VAR_POP, STDDEV_SAMP, STDDEV_POP, "
    "CORR, COVAR_SAMP, COVAR_POP, REGR_SLOPE, REGR_INTERCEPT, REGR_R2"
)
_NOT_SUMMABLE = {"min", "max", "median", "mode", "quantile", "percentile_cont", "percentile_disc"}
BINARY_OPS: dict[type[exp.Expression], BinaryOp] = {
    exp.Add: BinaryOp.ADD,
    exp.Sub: BinaryOp.SUB,
    exp.Mul: BinaryOp.MUL,
    exp.Div: BinaryOp.DIV,
}


def literal_int(node: exp.Expression | None, what: str) -> int:
    """A non-negative integer literal (LIMIT, OFFSET, a GROUP BY or ORDER BY position)."""
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        return int(node.this)
    raise UnsupportedQueryError(f"{what} must be a non-negative integer literal")


class ItemParser:
    """Parses select items (and HAVING's leaves) of a query reading ``table_names``."""

    def __init__(self, table_names: frozenset[str]) -> None:
        self.table_names = table_names

    def column(self, node: exp.Column) -> str:
        """A column's name, without a qualifier naming the query's table."""
        return column_name(node, self.table_names)

    def select_expression(self, node: exp.Expression) -> SelectExpr:
        """What one select item computes."""
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Star) or (
            isinstance(node, exp.Column) and isinstance(node.this, exp.Star)
        ):
            raise NonAggregateQueryError(
                "SELECT * would return individual rows; select aggregates such as COUNT(*) "
                "or AVG(col), optionally with GROUP BY on categorical columns"
            )
        if isinstance(node, exp.Grouping | exp.GroupingId):
            return self.grouping(node)
        group = group_expr_from_sqlglot(node, self.table_names)
        if group is not None:
            return group
        aggregate = self.aggregate(node)
        if aggregate is not None:
            return aggregate
        if node.find(exp.Window):
            raise UnsupportedQueryError("window functions (OVER ...) are not supported")
        if isinstance(node, exp.Neg | exp.Add | exp.Sub | exp.Mul | exp.Div) and (
            node.find(exp.AggFunc)
            or any(
                isinstance(n, exp.Anonymous) and str(n.this).lower() in _ANONYMOUS_AGGREGATES
                for n in node.walk()
            )
        ):
            value = self._arithmetic(node)
            if isinstance(value, Negative | Binary):
                return value
        if node.find(exp.AggFunc) or any(
            isinstance(n, exp.Anonymous) and str(n.this).lower() in _ANONYMOUS_AGGREGATES
            for n in node.walk()
        ):
            raise UnsupportedQueryError(
                f"the expression {node.sql()!r} over aggregates is not supported; combine "
                "aggregates with + - * / and numeric literals only"
            )
        if node.find(exp.Column):
            raise NonAggregateQueryError(
                f"{node.sql()!r} is computed per row and would return individual rows; "
                f"aggregate it with one of {SUPPORTED_AGGREGATES}"
            )
        raise UnsupportedQueryError(
            f"select item {node.sql()!r} is not an aggregate; every output column must be "
            f"a GROUP BY key or one of {SUPPORTED_AGGREGATES} (or arithmetic on them)"
        )

    def _arithmetic(self, node: exp.Expression) -> ValueExpr:
        """Arithmetic over aggregates and numeric literals (a select item)."""
        while isinstance(node, exp.Paren):
            node = node.this
        kind = type(node)
        if kind in BINARY_OPS:
            return Binary(
                BINARY_OPS[kind], self._arithmetic(node.this), self._arithmetic(node.expression)
            )
        if isinstance(node, exp.Neg):
            return Negative(self._arithmetic(node.this))
        if isinstance(node, exp.Literal) and not node.is_string:
            return self.number(node)
        if isinstance(node, exp.Grouping | exp.GroupingId):
            return self.grouping(node)
        aggregate = self.aggregate(node)
        if aggregate is not None:
            return aggregate
        if isinstance(node, exp.Column):
            raise NonAggregateQueryError(
                f"column {node.sql()!r} is used outside an aggregate in arithmetic; combine "
                "aggregates and numeric literals only"
            )
        raise UnsupportedQueryError(
            f"{node.sql()!r} is not supported in arithmetic on aggregates; use aggregates, "
            "numeric literals, + - * / and parentheses"
        )

    @staticmethod
    def number(node: exp.Literal) -> Number:
        """A numeric literal, which must be finite."""
        text = str(node.this)
        try:
            finite = Decimal(text).is_finite() and math.isfinite(float(text))
        except (ArithmeticError, ValueError):
            finite = False
        if not finite:
            raise UnsupportedQueryError(f"numeric literal {text!r} is not a finite number")
        return Number(text)

    def grouping(self, node: exp.Grouping | exp.GroupingId) -> Grouping:
        """``GROUPING(key, ...)``: each argument a GROUP BY key (checked when binding)."""
        args = list(node.expressions)
        if not args or len(args) > MAX_GROUPING_ARGUMENTS:
            raise UnsupportedQueryError(
                f"GROUPING takes 1 to {MAX_GROUPING_ARGUMENTS} GROUP BY keys, found {len(args)}"
            )
        keys: list[GroupExpr] = []
        for arg in args:
            key = group_expr_from_sqlglot(arg, self.table_names)
            if key is None:
                raise UnsupportedQueryError(
                    f"the arguments of GROUPING must be GROUP BY keys, found {arg.sql()!r}"
                )
            keys.append(key)
        return Grouping(tuple(keys))

    def aggregate(self, node: exp.Expression) -> Aggregate | None:
        """``node`` as an aggregate call (``None``: not an aggregate; unsupported ones raise)."""
        if isinstance(node, exp.Window):
            raise UnsupportedQueryError("window functions (OVER ...) are not supported")
        if isinstance(node, exp.Filter):
            raise UnsupportedQueryError(
                "aggregate FILTER (WHERE ...) is not supported; use the query's WHERE clause"
            )
        func: AggregateFunction | None = _AGGREGATES.get(type(node))
        args: list[exp.Expression]
        if func is not None:
            allowed = ("this", "big_int", "expression") if func.bivariate else ("this", "big_int")
            extra = [k for k, v in node.args.items() if v and k not in allowed]
            if extra:
                raise UnsupportedQueryError(
                    f"{func.value.upper()} takes exactly {2 if func.bivariate else 1} column "
                    f"argument(s); found {node.sql()!r}"
                )
            args = [a for a in (node.this, node.args.get("expression")) if a is not None]
        elif isinstance(node, exp.Anonymous):
            name = str(node.this).lower()
            func = _ANONYMOUS_AGGREGATES.get(name)
            if func is None:
                raise self._unknown_function(name)
            args = list(node.expressions)
        elif isinstance(node, exp.AggFunc):
            raise self._unknown_function(node.sql_name().lower())
        else:
            return None
        return self._aggregate_argument(func, args)

    @staticmethod
    def _unknown_function(name: str) -> UnsupportedQueryError:
        if name in ("min", "max"):
            return UnsupportedQueryError(
                f"{name.upper()} is refused here: it reveals a single record's value; the "
                "analyst SDK answers it (by exact histogram refinement) on columns classified "
                "public only; for other columns use QUANTILE_CONT(col, 0.01) or WIDTH_BUCKET "
                "histograms"
            )
        if name in _NOT_SUMMABLE:
            return UnsupportedQueryError(
                f"{name.upper()} is not supported: it cannot be computed from sums across "
                f"nodes; supported aggregates are {SUPPORTED_AGGREGATES}"
            )
        return UnsupportedQueryError(
            f"function {name.upper()} is not supported; supported aggregates are "
            f"{SUPPORTED_AGGREGATES}"
        )

    def _aggregate_argument(self, func: AggregateFunction, args: list[exp.Expression]) -> Aggregate:
        name = func.value.upper()
        arity = 2 if func.bivariate else 1
        if len(args) != arity:
            raise UnsupportedQueryError(
                f"{name} takes exactly {arity} argument{'s' if arity > 1 else ''}, "
                f"found {len(args)}"
            )
        columns = []
        for arg in args:
            if isinstance(arg, exp.Distinct):
                raise UnsupportedQueryError(
                    f"{name}(DISTINCT ...) is not supported: distinct values cannot be summed "
                    "across nodes"
                )
            if func is AggregateFunction.COUNT:
                if isinstance(arg, exp.Star):
                    return Aggregate(func, None)
                if isinstance(arg, exp.Literal) and not arg.is_string:
                    return Aggregate(func, None)  # COUNT(1) counts rows like COUNT(*)
            if isinstance(arg, exp.Star):
                raise UnsupportedQueryError(f"{name}(*) is not valid; write {name}(column)")
            product = self._product(arg) if func is AggregateFunction.SUM else None
            if product is not None:
                return Aggregate(func, product[0], product[1])
            if func is AggregateFunction.SUM and not isinstance(arg, exp.Column):
                return Aggregate(func, None, operand=self._row_value(arg))
            if not isinstance(arg, exp.Column):
                raise UnsupportedQueryError(
                    f"the arguments of {name} must be plain column names, found {arg.sql()!r}; "
                    "filter rows with WHERE instead of computing an expression"
                )
            columns.append(self.column(arg))
        if func.bivariate:
            return Aggregate(func, columns[0], columns[1])
        return Aggregate(func, columns[0])

    def _product(self, node: exp.Expression) -> tuple[str, str] | None:
        """``a * b`` of two plain columns (the exact cross product of ``SUM(a * b)``)."""
        while isinstance(node, exp.Paren):
            node = node.this
        if not isinstance(node, exp.Mul):
            return None
        left, right = node.this, node.expression
        while isinstance(left, exp.Paren):
            left = left.this
        while isinstance(right, exp.Paren):
            right = right.this
        if isinstance(left, exp.Column) and isinstance(right, exp.Column):
            return self.column(left), self.column(right)
        return None

    def _row_value(self, node: exp.Expression) -> RowExpr:
        """A per-row numeric expression (the argument of ``SUM(expr)``)."""
        while isinstance(node, exp.Paren):
            node = node.this
        kind = type(node)
        if kind in BINARY_OPS:
            return RowBinary(
                BINARY_OPS[kind], self._row_value(node.this), self._row_value(node.expression)
            )
        if isinstance(node, exp.Neg):
            return RowNegative(self._row_value(node.this))
        if isinstance(node, exp.Exp) and not any(v for k, v in node.args.items() if k != "this"):
            return RowExp(self._row_value(node.this))
        if isinstance(node, exp.Literal) and not node.is_string:
            return RowNumber(self.number(node).text)
        if isinstance(node, exp.Column):
            return RowColumn(self.column(node))
        raise UnsupportedQueryError(
            f"{node.sql()!r} is not supported inside SUM(...); a per-row expression may use "
            "numeric columns, numeric literals, + - * /, unary minus, parentheses and EXP"
        )
