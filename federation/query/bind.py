"""Bind a parsed query to a dataset schema: validate it and fix the vector layout.

The coordinator and every node bind the same SQL against the same schema and must
obtain the same :attr:`BoundQuery.fingerprint`; a node refuses a task whose
fingerprint differs from its own binding.

This module runs the steps and computes the fingerprint; the clauses are resolved by
:mod:`federation.query.bind_clauses`, the aggregates' sums chosen by
:mod:`federation.query.bind_aggregates` and the canonical SQL rendered by
:mod:`federation.query.canonical`; the results are :mod:`federation.query.bound`.
"""

from __future__ import annotations

import hashlib
import json

from federation.encoding import ENCODING_VERSION
from federation.errors import SchemaMismatchError, UnsupportedQueryError
from federation.query.bind_aggregates import product_fields, vector_aggregations
from federation.query.bind_clauses import ClauseBinder
from federation.query.bound import BoundOrder, BoundQuery, OutputColumn
from federation.query.canonical import render_canonical_sql
from federation.query.layout import build_layout
from federation.query.outputs import aggregates_of
from federation.query.parse import ParsedQuery
from federation.query.where import bind_predicate
from federation.schema import DatasetSchema

__all__ = ["BoundOrder", "BoundQuery", "OutputColumn", "bind_query", "product_fields"]


def bind_query(parsed: ParsedQuery, schema: DatasetSchema) -> BoundQuery:
    """Validate ``parsed`` against ``schema`` and compute the vector layout.

    Raises:
        SchemaMismatchError: The query reads a different dataset than the schema's.
        UnknownColumnError: A column does not exist.
        QueryTypeError: An aggregate or operator does not fit a column's type.
        NonAggregateQueryError: A select item or HAVING operand is neither aggregated
            nor a GROUP BY key.
        UnsupportedQueryError: GROUP BY a non-categorical column or a bucket without
            declared bounds, ORDER BY something that is not an output column, duplicate
            output names, too many groups.
    """
    if parsed.dataset.lower() != schema.name.lower():
        raise SchemaMismatchError(
            f"the query reads dataset {parsed.dataset!r} but the schema describes "
            f"{schema.name!r}; bind the query against the schema of its dataset"
        )
    binder = ClauseBinder(schema, parsed)
    group_keys = binder.group_keys
    outputs = tuple(binder.output(item.expression, item.alias) for item in parsed.items)
    if not outputs:
        raise UnsupportedQueryError("the select list is empty; select at least one aggregate")
    seen: set[str] = set()
    for out in outputs:
        if out.name.lower() in seen:
            raise UnsupportedQueryError(
                f"two output columns are named {out.name!r}; give one of them an alias (AS)"
            )
        seen.add(out.name.lower())
    binder.outputs = outputs
    having = binder.condition(parsed.having) if parsed.having is not None else None
    where = bind_predicate(parsed.where, schema) if parsed.where is not None else None
    used = [a for o in outputs for a in aggregates_of(o.source)]
    if having is not None:
        used += aggregates_of(having)
    aggregations, products = vector_aggregations(schema, used)
    layout = build_layout(group_keys, aggregations, products, binder.sets)
    order_by = tuple(binder.order(item) for item in parsed.order_by)
    canonical_sql = render_canonical_sql(
        dataset=schema.name,
        outputs=outputs,
        where=where,
        group_keys=group_keys,
        sets=layout.sets if layout.grouping_sets else None,
        having=having,
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
        "group_by": [repr(k.expression) for k in group_keys],
        "grouping_sets": [list(s) for s in layout.sets],
        "having": repr(having),
        "order_by": [repr(o) for o in order_by],
        "limit": parsed.limit,
        "offset": parsed.offset,
    }
    formats: list[object] = [a.format.to_dict() for a in aggregations if a.format is not None]
    formats += [[p.left_format.to_dict(), p.right_format.to_dict()] for p in products]
    fingerprint = hashlib.sha256(
        json.dumps(
            {
                "encoding": ENCODING_VERSION,
                "computation": computation,
                "schema": schema.fingerprint(),
                "layout": layout.to_dict(),
                "formats": formats,
            },
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
    ).hexdigest()
    return BoundQuery(
        dataset=schema.name,
        schema=schema,
        outputs=outputs,
        group_keys=group_keys,
        where=where,
        aggregations=aggregations,
        layout=layout,
        order_by=order_by,
        limit=parsed.limit,
        offset=parsed.offset,
        canonical_sql=canonical_sql,
        fingerprint=fingerprint,
        having=having,
        products=products,
    )
