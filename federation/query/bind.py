"""Bind a parsed query to a dataset schema: validate it and fix the vector layout.

The coordinator and every node bind the same SQL against the same schema and must
obtain the same :attr:`BoundQuery.fingerprint`; a node refuses a task whose
fingerprint differs from its own binding.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from sqlglot import exp

from federation.encoding import ENCODING_VERSION, fixed_point_format
from federation.errors import QueryTypeError, SchemaMismatchError, UnsupportedQueryError
from federation.query.expr import Expr
from federation.query.layout import ColumnAggregation, VectorLayout, build_layout
from federation.query.parse import (
    Aggregate,
    AggregateFunction,
    GroupColumn,
    OrderItem,
    ParsedQuery,
)
from federation.query.where import bind_predicate, to_sqlglot
from federation.schema import Column, ColumnType, DatasetSchema
from federation.table import ColumnKind

__all__ = ["BoundOrder", "BoundQuery", "OutputColumn", "bind_query"]

_NEEDS_SUM = frozenset(AggregateFunction) - {AggregateFunction.COUNT}
_NEEDS_SQUARES = frozenset(
    {
        AggregateFunction.VAR_SAMP,
        AggregateFunction.VAR_POP,
        AggregateFunction.STDDEV_SAMP,
        AggregateFunction.STDDEV_POP,
    }
)


@dataclass(frozen=True)
class OutputColumn:
    """One column of the result table."""

    name: str
    kind: ColumnKind
    source: Aggregate | GroupColumn


@dataclass(frozen=True)
class BoundOrder:
    """An ORDER BY key over the output: column index and direction."""

    index: int
    descending: bool
    nulls_first: bool


@dataclass(frozen=True)
class BoundQuery:
    """A query validated against a schema, with its vector layout and fingerprint."""

    dataset: str
    schema: DatasetSchema
    outputs: tuple[OutputColumn, ...]
    group_columns: tuple[Column, ...]
    where: Expr | None
    aggregations: tuple[ColumnAggregation, ...]
    layout: VectorLayout
    order_by: tuple[BoundOrder, ...]
    limit: int | None
    offset: int | None
    canonical_sql: str
    fingerprint: str

    @property
    def vector_length(self) -> int:
        """Length of the uint64 vector every node produces."""
        return self.layout.length


def bind_query(parsed: ParsedQuery, schema: DatasetSchema) -> BoundQuery:
    """Validate ``parsed`` against ``schema`` and compute the vector layout.

    Raises:
        SchemaMismatchError: The query reads a different dataset than the schema's.
        UnknownColumnError: A column does not exist.
        QueryTypeError: An aggregate or operator does not fit a column's type.
        UnsupportedQueryError: GROUP BY a non-categorical column, ORDER BY something
            that is not an output column, duplicate output names, too many groups.
    """
    if parsed.dataset.lower() != schema.name.lower():
        raise SchemaMismatchError(
            f"the query reads dataset {parsed.dataset!r} but the schema describes "
            f"{schema.name!r}; bind the query against the schema of its dataset"
        )
    group_columns = tuple(_group_column(schema, name) for name in parsed.group_by)
    outputs = tuple(_output(schema, item.expression, item.alias) for item in parsed.items)
    if not outputs:
        raise UnsupportedQueryError("the select list is empty; select at least one aggregate")
    seen: set[str] = set()
    for out in outputs:
        if out.name.lower() in seen:
            raise UnsupportedQueryError(
                f"two output columns are named {out.name!r}; give one of them an alias (AS)"
            )
        seen.add(out.name.lower())
    where = bind_predicate(parsed.where, schema) if parsed.where is not None else None
    aggregations = _aggregations(schema, outputs)
    layout = build_layout(group_columns, aggregations)
    order_by = tuple(_order(schema, outputs, item) for item in parsed.order_by)
    canonical_sql = _canonical_sql(
        dataset=schema.name,
        outputs=outputs,
        where=where,
        group_columns=group_columns,
        order_by=order_by,
        limit=parsed.limit,
        offset=parsed.offset,
    )
    # The computation is hashed from our own frozen dataclasses (their reprs are
    # deterministic), not from sqlglot's output, so nodes and coordinator agree even
    # when they run different sqlglot versions.
    computation = {
        "outputs": [[o.name, o.kind.value, repr(o.source)] for o in outputs],
        "where": repr(where),
        "group_by": [c.name for c in group_columns],
        "order_by": [repr(o) for o in order_by],
        "limit": parsed.limit,
        "offset": parsed.offset,
    }
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "encoding": ENCODING_VERSION,
                "computation": computation,
                "schema": schema.fingerprint(),
                "layout": layout.to_dict(),
                "formats": [a.format.to_dict() for a in aggregations if a.format is not None],
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    ).hexdigest()
    return BoundQuery(
        dataset=schema.name,
        schema=schema,
        outputs=outputs,
        group_columns=group_columns,
        where=where,
        aggregations=aggregations,
        layout=layout,
        order_by=order_by,
        limit=parsed.limit,
        offset=parsed.offset,
        canonical_sql=canonical_sql,
        fingerprint=fingerprint,
    )


def _group_column(schema: DatasetSchema, name: str) -> Column:
    col = schema.column(name)
    if col.type is not ColumnType.CATEGORICAL:
        raise UnsupportedQueryError(
            f"GROUP BY {col.name!r} is not supported: it is a {col.type.value} column, and "
            "only categorical columns (whose declared domain fixes the result layout) can "
            "be grouped by"
        )
    return col


def _bind_aggregate(schema: DatasetSchema, agg: Aggregate) -> tuple[Aggregate, ColumnKind]:
    if agg.column is None:
        return agg, ColumnKind.INTEGER
    col = schema.column(agg.column)
    bound = Aggregate(agg.function, col.name)
    if agg.function is AggregateFunction.COUNT:
        return bound, ColumnKind.INTEGER
    if not col.is_numeric:
        raise QueryTypeError(
            f"{agg.function.value.upper()}({col.name}) needs a numeric column, but "
            f"{col.name!r} is {col.type.value}; count it with COUNT({col.name})"
            + (" or group by it" if col.type is ColumnType.CATEGORICAL else "")
        )
    if agg.function is AggregateFunction.SUM and col.type is ColumnType.INTEGER:
        return bound, ColumnKind.INTEGER
    return bound, ColumnKind.DOUBLE


def _output(
    schema: DatasetSchema, expr: Aggregate | GroupColumn, alias: str | None
) -> OutputColumn:
    if isinstance(expr, GroupColumn):
        col = schema.column(expr.column)
        return OutputColumn(alias or col.name, ColumnKind.GROUP, GroupColumn(col.name))
    bound, kind = _bind_aggregate(schema, expr)
    name = alias or f"{bound.function.value}({bound.column or '*'})"
    return OutputColumn(name, kind, bound)


def _aggregations(
    schema: DatasetSchema, outputs: tuple[OutputColumn, ...]
) -> tuple[ColumnAggregation, ...]:
    needs: dict[str, tuple[bool, bool]] = {}
    for out in outputs:
        src = out.source
        if isinstance(src, Aggregate) and src.column is not None:
            s, q = needs.get(src.column, (False, False))
            needs[src.column] = (
                s or src.function in _NEEDS_SUM,
                q or src.function in _NEEDS_SQUARES,
            )
    result = []
    for name, (need_sum, need_squares) in needs.items():
        col = schema.column(name)
        fmt = fixed_point_format(col) if col.is_numeric else None
        result.append(ColumnAggregation(col, fmt, need_sum, need_squares))
    return tuple(result)


def _order(schema: DatasetSchema, outputs: tuple[OutputColumn, ...], item: OrderItem) -> BoundOrder:
    names = [o.name for o in outputs]
    target = item.target
    index: int | None = None
    if isinstance(target, int):
        if not 0 <= target < len(outputs):
            raise UnsupportedQueryError(
                f"ORDER BY {target + 1} is out of range: the query has {len(outputs)} outputs"
            )
        index = target
    elif isinstance(target, str):
        lowered = [n.lower() for n in names]
        if target.lower() in lowered:
            index = lowered.index(target.lower())
        elif schema.has_column(target):
            wanted = GroupColumn(schema.column(target).name)
            index = next((i for i, o in enumerate(outputs) if o.source == wanted), None)
    else:
        bound, _ = _bind_aggregate(schema, target)
        index = next((i for i, o in enumerate(outputs) if o.source == bound), None)
    if index is None:
        raise UnsupportedQueryError(
            "ORDER BY must name an output column (by name, alias or position); the outputs "
            f"are {names}"
        )
    return BoundOrder(index, item.descending, item.nulls_first)


def _identifier(name: str) -> exp.Identifier:
    return exp.to_identifier(name, quoted=True)


def _canonical_sql(
    *,
    dataset: str,
    outputs: tuple[OutputColumn, ...],
    where: Expr | None,
    group_columns: tuple[Column, ...],
    order_by: tuple[BoundOrder, ...],
    limit: int | None,
    offset: int | None,
) -> str:
    items: list[exp.Expression] = []
    for out in outputs:
        src = out.source
        value: exp.Expression
        if isinstance(src, GroupColumn):
            value = exp.Column(this=_identifier(src.column))
        else:
            arg = exp.Star() if src.column is None else exp.Column(this=_identifier(src.column))
            value = exp.Anonymous(this=src.function.value, expressions=[arg])
        items.append(exp.Alias(this=value, alias=_identifier(out.name)))
    select = exp.select(*items).from_(exp.Table(this=_identifier(dataset)))
    if where is not None:
        select = select.where(to_sqlglot(where))
    if group_columns:
        select = select.group_by(*(exp.Column(this=_identifier(c.name)) for c in group_columns))
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
