"""Parse an analyst's SQL into a :class:`ParsedQuery` (syntax and shape only).

sqlglot parses the text; this module walks its tree and accepts only the supported
subset, converting it into frozen dataclasses. It checks the statement and its clauses
(FROM, ORDER BY, LIMIT, OFFSET, the aggregate shape); the select items
(:mod:`federation.query.parse_items`), GROUP BY (:mod:`federation.query.parse_group_by`)
and HAVING (:mod:`federation.query.parse_having`) are parsed by their own modules.
Anything that would return individual rows raises
:class:`~federation.errors.NonAggregateQueryError`; anything outside the subset raises
:class:`~federation.errors.UnsupportedQueryError`; each message says what was found and
what to write instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlglot
from sqlglot import exp
from sqlglot.errors import SqlglotError

from federation.errors import NonAggregateQueryError, QuerySyntaxError, UnsupportedQueryError
from federation.query.expr import Expr
from federation.query.groups import (
    CaseBucket,
    FloorBucket,
    GroupColumn,
    GroupExpr,
    WidthBucket,
)
from federation.query.outputs import Aggregate, AggregateFunction, ValueExpr
from federation.query.parse_group_by import parse_group_by
from federation.query.parse_having import HavingParser
from federation.query.parse_items import (
    SUPPORTED_AGGREGATES,
    ItemParser,
    SelectExpr,
    literal_int,
)
from federation.query.where import predicate_from_sqlglot

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


class _SelectParser:
    def __init__(self, stmt: exp.Select) -> None:
        self.stmt = stmt
        self.table_names: frozenset[str] = frozenset()
        self.values: ItemParser  # set once FROM names the table

    def parse(self) -> ParsedQuery:
        for key, value in self.stmt.args.items():
            if value and key not in _ALLOWED_CLAUSES:
                raise UnsupportedQueryError(
                    _CLAUSE_HINTS.get(key, f"the {key.upper()} clause is not supported")
                )
        dataset = self._from()
        self.values = ItemParser(self.table_names)
        items = self._select_list()
        group_by, grouping_sets = parse_group_by(
            self.stmt.args.get("group"), tuple(i.expression for i in items), self.table_names
        )
        where_node = self.stmt.args.get("where")
        where = predicate_from_sqlglot(where_node.this, self.table_names) if where_node else None
        self._check_aggregate_shape(items, group_by)
        having_node = self.stmt.args.get("having")
        having = (
            HavingParser(self.values).condition(having_node.this)
            if having_node is not None
            else None
        )
        limit_node = self.stmt.args.get("limit")
        offset_node = self.stmt.args.get("offset")
        return ParsedQuery(
            dataset=dataset,
            items=items,
            where=where,
            group_by=group_by,
            grouping_sets=grouping_sets,
            order_by=self._order_by(),
            limit=literal_int(limit_node.expression, "LIMIT") if limit_node else None,
            offset=literal_int(offset_node.expression, "OFFSET") if offset_node else None,
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

    def _select_list(self) -> tuple[SelectItem, ...]:
        items = []
        for node in self.stmt.expressions:
            alias = node.alias if isinstance(node, exp.Alias) else None
            inner = node.this if isinstance(node, exp.Alias) else node
            items.append(SelectItem(self.values.select_expression(inner), alias))
        return tuple(items)

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
                f"query would return individual rows; aggregate it ({SUPPORTED_AGGREGATES}) or add "
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
                target = literal_int(node, "an ORDER BY position") - 1
            elif isinstance(node, exp.Column):
                target = self.values.column(node)
            else:
                try:
                    target = self.values.select_expression(node)
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
