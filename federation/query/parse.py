"""Parse an analyst's SQL into a :class:`ParsedQuery` (syntax and shape only).

sqlglot parses the text; this module walks its tree and accepts only the supported
subset, converting it into frozen dataclasses. Anything that would return individual
rows raises :class:`~federation.errors.NonAggregateQueryError`; anything outside the
subset raises :class:`~federation.errors.UnsupportedQueryError`; each message says
what was found and what to write instead.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from federation.errors import NonAggregateQueryError, QuerySyntaxError, UnsupportedQueryError
from federation.query.expr import Expr
from federation.query.where import column_name, predicate_from_sqlglot

__all__ = [
    "Aggregate",
    "AggregateFunction",
    "GroupColumn",
    "OrderItem",
    "ParsedQuery",
    "SelectItem",
    "parse_query",
]

MAX_SQL_LENGTH = 100_000
"""Longer query texts are refused before parsing."""


class AggregateFunction(enum.Enum):
    """The aggregate functions of the subset (value = canonical SQL name)."""

    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    VAR_SAMP = "var_samp"
    VAR_POP = "var_pop"
    STDDEV_SAMP = "stddev_samp"
    STDDEV_POP = "stddev_pop"


_AGGREGATES: dict[type[exp.Expression], AggregateFunction] = {
    exp.Count: AggregateFunction.COUNT,
    exp.Sum: AggregateFunction.SUM,
    exp.Avg: AggregateFunction.AVG,
    exp.Variance: AggregateFunction.VAR_SAMP,
    exp.VariancePop: AggregateFunction.VAR_POP,
    exp.Stddev: AggregateFunction.STDDEV_SAMP,
    exp.StddevSamp: AggregateFunction.STDDEV_SAMP,
    exp.StddevPop: AggregateFunction.STDDEV_POP,
}
_ANONYMOUS_AGGREGATES = {
    "mean": AggregateFunction.AVG,
    "var_samp": AggregateFunction.VAR_SAMP,
    "variance": AggregateFunction.VAR_SAMP,
    "var_pop": AggregateFunction.VAR_POP,
    "stddev": AggregateFunction.STDDEV_SAMP,
    "stddev_samp": AggregateFunction.STDDEV_SAMP,
    "stddev_pop": AggregateFunction.STDDEV_POP,
}
_SUPPORTED = "COUNT(*), COUNT(col), SUM, AVG, VAR_SAMP, VAR_POP, STDDEV_SAMP, STDDEV_POP"
_NOT_SUMMABLE = {"min", "max", "median", "mode", "quantile", "percentile_cont", "percentile_disc"}

_CLAUSE_HINTS = {
    "with_": "WITH (common table expressions) is not supported; query the dataset directly",
    "joins": "joins are not supported; a query reads one dataset",
    "having": "HAVING is not supported; filter rows with WHERE, or filter the released table",
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
_ALLOWED_CLAUSES = {"expressions", "from_", "from", "where", "group", "order", "limit", "offset"}


@dataclass(frozen=True)
class Aggregate:
    """An aggregate call; ``column`` is ``None`` only for ``COUNT(*)``."""

    function: AggregateFunction
    column: str | None


@dataclass(frozen=True)
class GroupColumn:
    """A select-list reference to a GROUP BY column."""

    column: str


@dataclass(frozen=True)
class SelectItem:
    """One output column: an aggregate or a group column, with its optional alias."""

    expression: Aggregate | GroupColumn
    alias: str | None = None


@dataclass(frozen=True)
class OrderItem:
    """One ORDER BY key of the aggregated output.

    ``target`` is a 0-based select-list position, an output/column name, or an
    aggregate call that must match a select item (resolved when binding).
    """

    target: int | str | Aggregate
    descending: bool = False
    nulls_first: bool = False


@dataclass(frozen=True)
class ParsedQuery:
    """The shape of an accepted query (not yet checked against a schema)."""

    dataset: str
    items: tuple[SelectItem, ...]
    where: Expr | None
    group_by: tuple[str, ...]
    order_by: tuple[OrderItem, ...] = ()
    limit: int | None = None
    offset: int | None = None


def parse_query(sql: str) -> ParsedQuery:
    """Parse SQL text into a :class:`ParsedQuery`.

    >>> parse_query("SELECT sex, AVG(age) FROM patients GROUP BY sex").group_by
    ('sex',)

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
        group_by = self._group_by(items)
        where_node = self.stmt.args.get("where")
        where = predicate_from_sqlglot(where_node.this, self.table_names) if where_node else None
        self._check_aggregate_shape(items, group_by)
        limit_node = self.stmt.args.get("limit")
        offset_node = self.stmt.args.get("offset")
        return ParsedQuery(
            dataset=dataset,
            items=items,
            where=where,
            group_by=group_by,
            order_by=self._order_by(),
            limit=_literal_int(limit_node.expression, "LIMIT") if limit_node else None,
            offset=_literal_int(offset_node.expression, "OFFSET") if offset_node else None,
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

    def _select_expression(self, node: exp.Expression) -> Aggregate | GroupColumn:
        while isinstance(node, exp.Paren):
            node = node.this
        if isinstance(node, exp.Star) or (
            isinstance(node, exp.Column) and isinstance(node.this, exp.Star)
        ):
            raise NonAggregateQueryError(
                "SELECT * would return individual rows; select aggregates such as COUNT(*) "
                "or AVG(col), optionally with GROUP BY on categorical columns"
            )
        if isinstance(node, exp.Column):
            return GroupColumn(self._column(node))
        aggregate = self._aggregate(node)
        if aggregate is not None:
            return aggregate
        if node.find(exp.Window):
            raise UnsupportedQueryError("window functions (OVER ...) are not supported")
        if node.find(exp.AggFunc) or any(
            isinstance(n, exp.Anonymous) and str(n.this).lower() in _ANONYMOUS_AGGREGATES
            for n in node.walk()
        ):
            raise UnsupportedQueryError(
                f"expressions over aggregates ({node.sql()!r}) are not supported; select the "
                "aggregates themselves and combine them after release"
            )
        if node.find(exp.Column):
            raise NonAggregateQueryError(
                f"{node.sql()!r} is computed per row and would return individual rows; "
                f"aggregate it with one of {_SUPPORTED}"
            )
        raise UnsupportedQueryError(
            f"select item {node.sql()!r} is not an aggregate; every output column must be "
            f"a GROUP BY column or one of {_SUPPORTED}"
        )

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
            extra = [k for k, v in node.args.items() if v and k not in ("this", "big_int")]
            if extra:
                raise UnsupportedQueryError(
                    f"{func.value.upper()} takes exactly one column argument; found {node.sql()!r}"
                )
            args = [node.this] if node.this is not None else []
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
        if len(args) != 1:
            raise UnsupportedQueryError(f"{name} takes exactly one argument, found {len(args)}")
        arg = args[0]
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
        if not isinstance(arg, exp.Column):
            raise UnsupportedQueryError(
                f"the argument of {name} must be a plain column name, found {arg.sql()!r}; "
                "filter rows with WHERE instead of computing an expression"
            )
        return Aggregate(func, self._column(arg))

    def _group_by(self, items: tuple[SelectItem, ...]) -> tuple[str, ...]:
        group = self.stmt.args.get("group")
        if group is None:
            return ()
        extra = [k for k, v in group.args.items() if v and k != "expressions"]
        if extra:
            raise UnsupportedQueryError(
                "GROUP BY supports plain column names only (no ROLLUP, CUBE, GROUPING SETS or ALL)"
            )
        names: list[str] = []
        for node in group.expressions:
            if isinstance(node, exp.Column):
                name = self._column(node)
            elif isinstance(node, exp.Literal) and not node.is_string:
                pos = _literal_int(node, "a GROUP BY position")
                if not 1 <= pos <= len(items):
                    raise UnsupportedQueryError(
                        f"GROUP BY {pos} is out of range: the select list has {len(items)} items"
                    )
                target = items[pos - 1].expression
                if not isinstance(target, GroupColumn):
                    raise UnsupportedQueryError(f"GROUP BY {pos} refers to an aggregate")
                name = target.column
            else:
                raise UnsupportedQueryError(
                    f"GROUP BY {node.sql()!r} is not supported; group by categorical column names"
                )
            if name.lower() in (n.lower() for n in names):
                raise UnsupportedQueryError(f"GROUP BY names column {name!r} twice")
            names.append(name)
        return tuple(names)

    @staticmethod
    def _check_aggregate_shape(items: tuple[SelectItem, ...], group_by: tuple[str, ...]) -> None:
        grouped = {g.lower() for g in group_by}
        for item in items:
            expr = item.expression
            if isinstance(expr, GroupColumn) and expr.column.lower() not in grouped:
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
            target: int | str | Aggregate
            if isinstance(node, exp.Literal) and not node.is_string:
                target = _literal_int(node, "an ORDER BY position") - 1
            elif isinstance(node, exp.Column):
                target = self._column(node)
            else:
                agg = self._aggregate(node)
                if agg is None:
                    raise UnsupportedQueryError(
                        f"ORDER BY {node.sql()!r} is not supported; order by an output column "
                        "(its name, alias or position)"
                    )
                target = agg
            out.append(
                OrderItem(
                    target,
                    descending=bool(ordered.args.get("desc")),
                    nulls_first=bool(ordered.args.get("nulls_first")),
                )
            )
        return tuple(out)
