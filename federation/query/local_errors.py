"""What made the node's local query fail, named without quoting a data value.

:func:`diagnose` probes which column or group key holds values the query cannot
aggregate; :func:`failed_check` names the check that failed among checks counted
together; :func:`evaluation_error` turns a DuckDB error into a :class:`DataError` that
repeats DuckDB's message only when it cannot quote data.
"""

from __future__ import annotations

import duckdb

from federation.errors import DataError
from federation.query.bind import BoundQuery
from federation.query.formulation import domain_error, quote, range_condition, string_literal
from federation.query.groups import GroupColumn, GroupKey
from federation.query.layout import ColumnAggregation
from federation.query.where import render_predicate
from federation.schema import ColumnType

__all__ = ["diagnose", "evaluation_error", "failed_check", "unknown_group"]

# DuckDB errors raised before any row is read: their messages cannot quote data values.
_SAFE_MESSAGE_ERRORS = (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException)


def diagnose(bound: BoundQuery, con: duckdb.DuckDBPyConnection, relation: str) -> None:
    """Find which column made the local query fail or flag a value; raise its error."""
    probes: list[tuple[str, DataError]] = []
    numeric = [(a, a.need_sum) for a in bound.aggregations]
    numeric += [
        (ColumnAggregation(c, fmt, need_sum=True, need_squares=False), True)
        for p in bound.products
        for c, fmt in ((p.left, p.left_format), (p.right, p.right_format))
    ]
    for agg, need_sum in numeric:
        raw, col, fmt = quote(agg.column.name), agg.column, agg.format
        what = f"column {col.name!r}"
        if agg.expression is not None and fmt is not None:
            raw, what = agg.expression, f"the {fmt.column}"
        if fmt is not None and need_sum:
            if col.type is ColumnType.DOUBLE:
                probes.append(
                    (
                        f"count_if(NOT isfinite({raw}))",
                        DataError(
                            f"{what} holds NaN or infinite values, which cannot "
                            "be aggregated; clean the data or filter them out with WHERE"
                        ),
                    )
                )
            probes.append(
                (f"count_if(NOT ({range_condition(raw, fmt)}))", fmt.out_of_range_error())
            )
        elif col.type is ColumnType.CATEGORICAL:
            domain = ", ".join(string_literal(v) for v in col.domain)
            probes.append((f"count_if(NOT ({raw} IN ({domain})))", domain_error(col)))
    for key in bound.group_keys:
        if not isinstance(key.expression, GroupColumn):
            continue
        col = bound.schema.column(key.expression.column)
        domain = ", ".join(string_literal(v) for v in col.domain)
        probes.append((f"count_if(NOT ({quote(col.name)} IN ({domain})))", domain_error(col)))
    if not probes:
        return
    sql = f"SELECT {', '.join(p for p, _ in probes)} FROM {relation}"  # noqa: S608
    if bound.where is not None:
        sql += f" WHERE {render_predicate(bound.where)}"
    try:
        row = con.execute(sql).fetchall()[0]  # an ungrouped aggregate: exactly one row
    except duckdb.Error as exc:
        raise evaluation_error(exc) from None
    for count, (_, error) in zip(row, probes, strict=True):
        if count:
            raise error


def failed_check(
    bound: BoundQuery,
    con: duckdb.DuckDBPyConnection,
    relation: str,
    parts: list[tuple[str, DataError]] | None,
    error: DataError,
) -> DataError:
    """The error of a failed check; for checks counted together, of the first that fails."""
    if not parts:
        return error
    sql = f"SELECT {', '.join(f'count_if(NOT ({c}))' for c, _ in parts)} FROM {relation}"  # noqa: S608
    if bound.where is not None:
        sql += f" WHERE {render_predicate(bound.where)}"
    try:
        row = con.execute(sql).fetchall()[0]  # an ungrouped aggregate: exactly one row
    except duckdb.Error as exc:
        return evaluation_error(exc)
    return next((e for count, (_, e) in zip(row, parts, strict=True) if count), error)


def evaluation_error(exc: duckdb.Error) -> DataError:
    if isinstance(exc, _SAFE_MESSAGE_ERRORS):  # about the query or relation, not the data
        return DataError(f"the node's DuckDB could not run the local query: {exc}")
    return DataError(
        f"evaluating the query on this node's data failed (DuckDB {type(exc).__name__}), "
        "e.g. a division by zero or an integer overflow in the WHERE clause; the DuckDB "
        "message is withheld because it may quote data values"
    )


def unknown_group(bound: BoundQuery, key: GroupKey) -> DataError:
    if isinstance(key.expression, GroupColumn):
        return domain_error(bound.schema.column(key.expression.column))
    return DataError(
        f"a row falls outside the groups of GROUP BY {key.name}, which are fixed in advance; "
        "check the column's declared bounds"
    )
