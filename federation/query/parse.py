"""Parse an analyst's SQL into a :class:`ParsedQuery` (syntax and shape only).

sqlglot parses the text; this module walks its tree and accepts only the supported
subset, converting it into frozen dataclasses. Anything that would return individual
rows raises :class:`~federation.errors.NonAggregateQueryError`; anything outside the
subset raises :class:`~federation.errors.UnsupportedQueryError`; each message says
what was found and what to write instead.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from federation.errors import NonAggregateQueryError, QuerySyntaxError, UnsupportedQueryError
from federation.query.expr import ComparisonOp, Expr, LogicalOp
from federation.query.groups import (
    CaseBucket,
    FloorBucket,
    GroupColumn,
    GroupExpr,
    WidthBucket,
    group_expr_from_sqlglot,
)
from federation.query.layout import MAX_GROUPING_SETS
from federation.query.outputs import (
    Aggregate,
    AggregateFunction,
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
from federation.query.where import column_name, predicate_from_sqlglot

__all__ = [
    "Aggregate",
    "AggregateFunction",
    "CaseBucket",
    "FloorBucket",
    "GroupColumn",
    "GroupExpr",
    "OrderItem",
    "ParsedQuery",
    "SelectExpr",
    "SelectItem",
    "WidthBucket",
    "parse_query",
]

MAX_SQL_LENGTH = 100_000
"""Longer query texts are refused before parsing."""

SelectExpr = Aggregate | GroupExpr | Grouping | Negative | Binary
"""What a select item computes: an aggregate, a GROUP BY key, ``GROUPING(keys)``, or
arithmetic on aggregates."""

_SET_NODES = (exp.GroupingSets, exp.Rollup, exp.Cube)
_MAX_CUBE = 12
"""The most elements of a CUBE (2**12 grouping sets)."""
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
_SUPPORTED = (
    "COUNT(*), COUNT(col), SUM, AVG, VAR_SAMP, VAR_POP, STDDEV_SAMP, STDDEV_POP, "
    "CORR, COVAR_SAMP, COVAR_POP, REGR_SLOPE, REGR_INTERCEPT, REGR_R2"
)
_NOT_SUMMABLE = {"min", "max", "median", "mode", "quantile", "percentile_cont", "percentile_disc"}

_CLAUSE_HINTS = {
    "with_": "WITH (common table expressions) is not supported; query the dataset directly",
    "joins": "joins are not supported; a query reads one dataset",
    "distinct": "SELECT DISTINCT is not supported; use GROUP BY on categorical columns",
    "qualify": "QUALIFY is not supported (no window functions)",
    "windows": "window functions are not supported",
    "laterals": "LATERAL is not supported",
    "pivots": "PIVOT is not supported",
    "sample": "TABLESAMPLE is not supported",
    "into": "SELECT INTO is not supported",
    "locks": "locking clauses are not supported",
    "connect": "CONNECT BY is not supported",
    "prewhere": "PREWHERE is not supported; use WHERE",
    "sort": "SORT BY is not supported; use ORDER BY",
    "cluster": "CLUSTER BY is not supported",
    "distribute": "DISTRIBUTE BY is not supported",
    "match": "MATCH_RECOGNIZE is not supported",
    "settings": "SETTINGS is not supported",
    "format": "FORMAT is not supported",
    "options": "query options are not supported",
}
_ALLOWED_CLAUSES = {
    *("expressions", "from_", "from", "where", "group", "having", "order", "limit", "offset")
}
_BINARY: dict[type[exp.Expression], BinaryOp] = {
    exp.Add: BinaryOp.ADD,
    exp.Sub: BinaryOp.SUB,
    exp.Mul: BinaryOp.MUL,
    exp.Div: BinaryOp.DIV,
}
_COMPARISON: dict[type[exp.Expression], ComparisonOp] = {
    exp.EQ: ComparisonOp.EQ,
    exp.NEQ: ComparisonOp.NEQ,
    exp.LT: ComparisonOp.LT,
    exp.LTE: ComparisonOp.LTE,
    exp.GT: ComparisonOp.GT,
    exp.GTE: ComparisonOp.GTE,
}


@dataclass(frozen=True)
class SelectItem:
    """One output column: an aggregate, a GROUP BY key or arithmetic on aggregates."""

    expression: SelectExpr
    alias: str | None = None


@dataclass(frozen=True)
class OrderItem:
    """One ORDER BY key of the aggregated output.

    ``target`` is a 0-based select-list position, an output/column name, or an
    expression that must match a select item (resolved when binding).
    """

    target: int | str | SelectExpr
    descending: bool = False
    nulls_first: bool = False


@dataclass(frozen=True)
class ParsedQuery:
    """The shape of an accepted query (not yet checked against a schema).

    A :class:`GroupColumn` in ``group_by`` may name a select alias; binding resolves it
    (a dataset column of that name takes precedence, as in DuckDB).
    """

    dataset: str
    items: tuple[SelectItem, ...]
    where: Expr | None
    group_by: tuple[GroupExpr, ...]
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None
    having: ValueExpr | None = None
    grouping_sets: tuple[tuple[int, ...], ...] | None = None
    """For ``GROUPING SETS``, ``ROLLUP`` or ``CUBE``: each grouping set as ascending
    indices into ``group_by``; ``None`` for an ordinary GROUP BY (one set of every key)."""


MAX_NESTING = 200
"""The deepest expression tree a query may have (a chain of ``n`` ANDs is ``n`` deep)."""


def _too_deep(levels: str) -> str:
    return (
        f"the query nests {levels} levels deep; at most {MAX_NESTING} are supported "
        "(write long lists of alternatives as IN (...), ranges as BETWEEN)"
    )


def _depth(root: Any) -> int:
    """The depth of a sqlglot expression tree, without recursion."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        deepest = max(deepest, depth)
        for child in node.iter_expressions():
            stack.append((child, depth + 1))
    return deepest


def parse_query(sql: str) -> ParsedQuery:
    """Parse SQL text into a :class:`ParsedQuery`.

    >>> parse_query("SELECT sex, AVG(age) FROM patients GROUP BY sex").group_by
    (GroupColumn(column='sex'),)

    Raises:
        QuerySyntaxError: The text is empty or does not parse.
        NonAggregateQueryError: The query would return individual rows.
        UnsupportedQueryError: The query uses SQL outside the supported subset.
    """
    if not isinstance(sql, str):
        raise QuerySyntaxError(f"the query must be SQL text, got {type(sql).__name__}")
    if len(sql) > MAX_SQL_LENGTH:
        raise QuerySyntaxError(
            f"the query is {len(sql)} characters long; at most {MAX_SQL_LENGTH} are accepted"
        )
    try:
        statements = [s for s in sqlglot.parse(sql, read="duckdb") if s is not None]
    except SqlglotError as exc:
        raise QuerySyntaxError(f"the query does not parse as SQL: {_syntax_detail(exc)}") from None
    except RecursionError:
        raise UnsupportedQueryError(_too_deep("too many")) from None
    for statement in statements:
        depth = _depth(statement)
        if depth > MAX_NESTING:
            raise UnsupportedQueryError(_too_deep(str(depth)))
    if not statements:
        raise QuerySyntaxError("the query is empty; write SELECT <aggregates> FROM <dataset>")
    if len(statements) > 1:
        raise UnsupportedQueryError(
            f"the text holds {len(statements)} statements; send exactly one SELECT"
        )
    stmt = statements[0]
    if not isinstance(stmt, exp.Select):
        raise UnsupportedQueryError(
            f"found a statement of type {stmt.key.upper()}; only one aggregate SELECT "
            "statement is supported"
        )
    return _SelectParser(stmt).parse()


def _syntax_detail(exc: SqlglotError) -> str:
    """sqlglot's first error description and position, without terminal highlighting."""
    errors = getattr(exc, "errors", None)
    if errors:
        first = errors[0]
        return f"{first.get('description')} (line {first.get('line')}, column {first.get('col')})"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _literal_int(node: exp.Expression | None, what: str) -> int:
    if isinstance(node, exp.Literal) and not node.is_string and node.this.isdigit():
        return int(node.this)
    raise UnsupportedQueryError(f"{what} must be a non-negative integer literal")


class _SelectParser:
    def __init__(self, stmt: exp.Select) -> None:
        self.stmt = stmt
        self.table_names: frozenset[str] = frozenset()

    def parse(self) -> ParsedQuery:
        for key, value in self.stmt.args.items():
            if value and key not in _ALLOWED_CLAUSES:
                raise UnsupportedQueryError(
                    _CLAUSE_HINTS.get(key, f"the {key.upper()} clause is not supported")
                )
        dataset = self._from()
        items = self._select_list()
        group_by, grouping_sets = self._group_by(items)
        where_node = self.stmt.args.get("where")
        where = predicate_from_sqlglot(where_node.this, self.table_names) if where_node else None
        self._check_aggregate_shape(items, group_by)
        having_node = self.stmt.args.get("having")
        having = self._condition(having_node.this) if having_node is not None else None
        limit_node = self.stmt.args.get("limit")
        offset_node = self.stmt.args.get("offset")
        return ParsedQuery(
            dataset=dataset,
            items=items,
            where=where,
            group_by=group_by,
            grouping_sets=grouping_sets,
            order_by=self._order_by(),
            limit=_literal_int(limit_node.expression, "LIMIT") if limit_node else None,
            offset=_literal_int(offset_node.expression, "OFFSET") if offset_node else None,
            having=having,
        )

    def _from(self) -> str:
        from_ = self.stmt.args.get("from_") or self.stmt.args.get("from")
        if from_ is None:
            raise UnsupportedQueryError("the query has no FROM; write FROM <dataset>")
        source = from_.this
        if isinstance(source, exp.Subquery | exp.Select):
            raise UnsupportedQueryError("subqueries are not supported; FROM names one dataset")
        plain = isinstance(source, exp.Table) and isinstance(source.this, exp.Identifier)
        extra = [k for k, v in source.args.items() if v and k not in ("this", "alias")]
        if not plain or extra:
            raise UnsupportedQueryError(
                f"FROM must be a single plain dataset name, found {source.sql()!r}"
            )
        name = str(source.this.this)
        names = {name.lower()}
        alias = source.args.get("alias")
        if alias is not None:
            if alias.args.get("columns"):
                raise UnsupportedQueryError("column aliases on the FROM table are not supported")
            names.add(alias.name.lower())
        self.table_names = frozenset(names)
        return name

    def _column(self, node: exp.Column) -> str:
        return column_name(node, self.table_names)

    def _select_list(self) -> tuple[SelectItem, ...]:
        items = []
        for node in self.stmt.expressions:
            alias = node.alias if isinstance(node, exp.Alias) else None
            inner = node.this if isinstance(node, exp.Alias) else node
            items.append(SelectItem(self._select_expression(inner), alias))
        return tuple(items)

    def _select_expression(self, node: exp.Expression) -> SelectExpr:
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
            return self._grouping(node)
        group = group_expr_from_sqlglot(node, self.table_names)
        if group is not None:
            return group
        aggregate = self._aggregate(node)
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
                f"aggregate it with one of {_SUPPORTED}"
            )
        raise UnsupportedQueryError(
            f"select item {node.sql()!r} is not an aggregate; every output column must be "
            f"a GROUP BY key or one of {_SUPPORTED} (or arithmetic on them)"
        )

    def _arithmetic(self, node: exp.Expression) -> ValueExpr:
        """Arithmetic over aggregates and numeric literals (a select item)."""
        while isinstance(node, exp.Paren):
            node = node.this
        kind = type(node)
        if kind in _BINARY:
            return Binary(
                _BINARY[kind], self._arithmetic(node.this), self._arithmetic(node.expression)
            )
        if isinstance(node, exp.Neg):
            return Negative(self._arithmetic(node.this))
        if isinstance(node, exp.Literal) and not node.is_string:
            return self._number(node)
        if isinstance(node, exp.Grouping | exp.GroupingId):
            return self._grouping(node)
        aggregate = self._aggregate(node)
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
    def _number(node: exp.Literal) -> Number:
        text = str(node.this)
        try:
            finite = Decimal(text).is_finite() and math.isfinite(float(text))
        except (ArithmeticError, ValueError):
            finite = False
        if not finite:
            raise UnsupportedQueryError(f"numeric literal {text!r} is not a finite number")
        return Number(text)

    def _operand(self, node: exp.Expression) -> ValueExpr:  # noqa: PLR0911 - per node type
        """A HAVING operand: arithmetic on aggregates, a group key, an alias or a literal."""
        while isinstance(node, exp.Paren):
            node = node.this
        kind = type(node)
        if kind in _BINARY:
            return Binary(_BINARY[kind], self._operand(node.this), self._operand(node.expression))
        if isinstance(node, exp.Neg):
            return Negative(self._operand(node.this))
        if isinstance(node, exp.Literal):
            return Text(str(node.this)) if node.is_string else self._number(node)
        if isinstance(node, exp.Null):
            return Null()
        if isinstance(node, exp.Column):
            return OutputRef(self._column(node))
        if isinstance(node, exp.Grouping | exp.GroupingId):
            return self._grouping(node)
        group = group_expr_from_sqlglot(node, self.table_names)
        if group is not None:
            return group
        aggregate = self._aggregate(node)
        if aggregate is not None:
            return aggregate
        raise UnsupportedQueryError(
            f"{node.sql()!r} is not supported in HAVING; compare aggregates, GROUP BY keys, "
            "output aliases and literals"
        )

    def _condition(self, node: exp.Expression) -> ValueExpr:  # noqa: PLR0911 - per node type
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
            return Connective(op, self._condition(node.this), self._condition(node.expression))
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
            return Negation(self._condition(inner))
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

    def _grouping(self, node: exp.Grouping | exp.GroupingId) -> Grouping:
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

    def _aggregate(self, node: exp.Expression) -> Aggregate | None:
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
                f"nodes; supported aggregates are {_SUPPORTED}"
            )
        return UnsupportedQueryError(
            f"function {name.upper()} is not supported; supported aggregates are {_SUPPORTED}"
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
            columns.append(self._column(arg))
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
            return self._column(left), self._column(right)
        return None

    def _row_value(self, node: exp.Expression) -> RowExpr:
        """A per-row numeric expression (the argument of ``SUM(expr)``)."""
        while isinstance(node, exp.Paren):
            node = node.this
        kind = type(node)
        if kind in _BINARY:
            return RowBinary(
                _BINARY[kind], self._row_value(node.this), self._row_value(node.expression)
            )
        if isinstance(node, exp.Neg):
            return RowNegative(self._row_value(node.this))
        if isinstance(node, exp.Exp) and not any(v for k, v in node.args.items() if k != "this"):
            return RowExp(self._row_value(node.this))
        if isinstance(node, exp.Literal) and not node.is_string:
            return RowNumber(self._number(node).text)
        if isinstance(node, exp.Column):
            return RowColumn(self._column(node))
        raise UnsupportedQueryError(
            f"{node.sql()!r} is not supported inside SUM(...); a per-row expression may use "
            "numeric columns, numeric literals, + - * /, unary minus, parentheses and EXP"
        )

    def _group_by(
        self, items: tuple[SelectItem, ...]
    ) -> tuple[tuple[GroupExpr, ...], tuple[tuple[int, ...], ...] | None]:
        """The GROUP BY keys (each once, in first-use order) and, for GROUPING SETS,
        ROLLUP or CUBE, the grouping sets as ascending key indices (``None``: an
        ordinary GROUP BY of every key)."""
        group = self.stmt.args.get("group")
        if group is None:
            return (), None
        extra = [k for k, v in group.args.items() if v and k in ("totals", "all")]
        if extra:
            raise UnsupportedQueryError(
                f"GROUP BY {'ALL' if 'all' in extra else '... WITH TOTALS'} is not supported; "
                "name the keys, or use GROUPING SETS"
            )
        elements: list[exp.Expression] = list(group.expressions)
        for name in ("grouping_sets", "rollup", "cube"):
            elements += list(group.args.get(name) or [])
        keys: list[GroupExpr] = []
        plain = not any(isinstance(e, _SET_NODES) for e in elements)

        def index_of(node: exp.Expression) -> int:
            key = self._group_key(node, items)
            for i, known in enumerate(keys):
                if known == key or (
                    isinstance(known, GroupColumn)
                    and isinstance(key, GroupColumn)
                    and known.column.lower() == key.column.lower()
                ):
                    if plain:
                        raise UnsupportedQueryError(f"GROUP BY names {node.sql()!r} twice")
                    return i
            keys.append(key)
            return len(keys) - 1

        sets: list[tuple[int, ...]] = [()]
        for element in elements:
            options = self._element_sets(element, index_of)
            sets = [tuple(sorted({*a, *b})) for a in sets for b in options]
            if len(sets) > MAX_GROUPING_SETS:
                raise UnsupportedQueryError(
                    f"the GROUP BY clause expands to more than {MAX_GROUPING_SETS} grouping "
                    "sets; list fewer"
                )
        if sets == [tuple(range(len(keys)))]:
            return tuple(keys), None  # one set of every key: an ordinary GROUP BY
        return tuple(keys), tuple(sets)

    def _element_sets(
        self, node: exp.Expression, index_of: Callable[[exp.Expression], int]
    ) -> list[tuple[int, ...]]:
        """The grouping sets one GROUP BY element stands for (a plain key: one set)."""
        if isinstance(node, exp.GroupingSets):
            out: list[tuple[int, ...]] = []
            for spec in node.expressions:
                if isinstance(spec, exp.GroupingSets | exp.Rollup | exp.Cube):
                    out += self._element_sets(spec, index_of)
                else:
                    out.append(self._set_keys(spec, index_of))
            return out
        if isinstance(node, exp.Rollup | exp.Cube):
            parts = [self._set_keys(e, index_of) for e in node.expressions]
            if isinstance(node, exp.Rollup):
                return [tuple(k for p in parts[:n] for k in p) for n in range(len(parts), -1, -1)]
            if len(parts) > _MAX_CUBE:
                raise UnsupportedQueryError(
                    f"CUBE of {len(parts)} elements gives {2 ** len(parts)} grouping sets; at "
                    f"most {_MAX_CUBE} elements are supported"
                )
            return [
                tuple(k for j, p in enumerate(parts) if mask >> (len(parts) - 1 - j) & 1 for k in p)
                for mask in range(2 ** len(parts) - 1, -1, -1)
            ]
        return [(index_of(node),)]

    def _set_keys(
        self, node: exp.Expression, index_of: Callable[[exp.Expression], int]
    ) -> tuple[int, ...]:
        """The keys of one grouping set: ``(a, b)``, ``(a)``, ``a`` or ``()``."""
        parts = node.expressions if isinstance(node, exp.Tuple) else [node]
        if isinstance(node, exp.Paren) and isinstance(node.this, exp.Tuple):
            return self._set_keys(node.this, index_of)
        if any(isinstance(p, _SET_NODES) for p in parts):
            raise UnsupportedQueryError(
                "GROUPING SETS, ROLLUP and CUBE cannot be nested inside a grouping set's "
                "key list; list them as elements of GROUPING SETS (...) instead"
            )
        return tuple(index_of(p) for p in parts)

    def _group_key(self, node: exp.Expression, items: tuple[SelectItem, ...]) -> GroupExpr:
        """One GROUP BY key: an expression, a select-list position or an alias."""
        key: GroupExpr | None
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Literal) and not node.is_string:
            pos = _literal_int(node, "a GROUP BY position")
            if not 1 <= pos <= len(items):
                raise UnsupportedQueryError(
                    f"GROUP BY {pos} is out of range: the select list has {len(items)} items"
                )
            target = items[pos - 1].expression
            if not isinstance(target, GroupColumn | FloorBucket | WidthBucket | CaseBucket):
                raise UnsupportedQueryError(f"GROUP BY {pos} refers to an aggregate")
            return target
        key = group_expr_from_sqlglot(node, self.table_names)
        if key is None:
            raise UnsupportedQueryError(
                f"GROUP BY {node.sql()!r} is not supported; group by categorical columns or "
                "bucket expressions (FLOOR(col / w), WIDTH_BUCKET(col, lo, hi, n), "
                "CASE WHEN ... THEN 'label' ... END), or list grouping sets of them"
            )
        return key

    @staticmethod
    def _check_aggregate_shape(
        items: tuple[SelectItem, ...], group_by: tuple[GroupExpr, ...]
    ) -> None:
        grouped = {g.column.lower() for g in group_by if isinstance(g, GroupColumn)}
        for item in items:
            expr = item.expression
            if not isinstance(expr, GroupColumn) or expr.column.lower() in grouped:
                continue
            if item.alias is not None and item.alias.lower() in grouped:
                continue  # GROUP BY <alias>: checked when binding
            raise NonAggregateQueryError(
                f"column {expr.column!r} is neither aggregated nor in GROUP BY, so the "
                f"query would return individual rows; aggregate it ({_SUPPORTED}) or add "
                "it to GROUP BY if it is categorical"
            )

    def _order_by(self) -> tuple[OrderItem, ...]:
        order = self.stmt.args.get("order")
        if order is None:
            return ()
        out = []
        for ordered in order.expressions:
            node = ordered.this
            target: int | str | SelectExpr
            if isinstance(node, exp.Literal) and not node.is_string:
                target = _literal_int(node, "an ORDER BY position") - 1
            elif isinstance(node, exp.Column):
                target = self._column(node)
            else:
                try:
                    target = self._select_expression(node)
                except NonAggregateQueryError:
                    raise UnsupportedQueryError(
                        f"ORDER BY {node.sql()!r} is not supported; order by an output column "
                        "(its name, alias or position)"
                    ) from None
            out.append(
                OrderItem(
                    target,
                    descending=bool(ordered.args.get("desc")),
                    nulls_first=bool(ordered.args.get("nulls_first")),
                )
            )
        return tuple(out)
