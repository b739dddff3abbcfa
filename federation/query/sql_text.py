"""SQL text pieces of the local query: quoted identifiers, literals, range conditions.

Shared by the formulations (:mod:`federation.query.formulation`) and the node's
probes (:mod:`federation.query.local`); :func:`masked` is an aggregated column's values.
"""

from __future__ import annotations

from sqlglot import exp

from federation.encoding import FixedPointFormat
from federation.query.layout import ColumnAggregation
from federation.schema import ColumnType

__all__ = ["double_literal", "masked", "quote", "range_condition", "string_literal"]


def quote(name: str) -> str:
    """A quoted SQL identifier (names here are schema identifiers or '#'-prefixed aliases).

    DuckDB matches identifiers case-insensitively even when quoted, so generated aliases
    differ by more than case (and ``#`` never appears in a schema column name).
    """
    return '"' + name.replace('"', '""') + '"'


def string_literal(value: str) -> str:
    """A DuckDB string literal."""
    return exp.Literal.string(value).sql(dialect="duckdb")


def double_literal(value: float) -> str:
    """An exact DOUBLE literal (DuckDB's string-to-double cast rounds correctly)."""
    return f"CAST('{value!r}' AS DOUBLE)"


def range_condition(raw: str, fmt: FixedPointFormat) -> str:
    """SQL that is true when ``raw`` lies in the accepted range of ``fmt``."""
    if fmt.column_type is ColumnType.INTEGER:
        return f"{raw} BETWEEN {int(fmt.lower)} AND {int(fmt.upper)}"
    lo, hi = double_literal(float(fmt.lower)), double_literal(float(fmt.upper))
    return f"{raw} BETWEEN {lo} AND {hi}"


def masked(agg: ColumnAggregation) -> str:
    """The SQL of an aggregated column's values (NULL where its mask column is NULL)."""
    if agg.expression is not None:
        return agg.expression
    raw = quote(agg.column.name)
    if agg.mask is None:
        return raw
    return f"(CASE WHEN {quote(agg.mask.name)} IS NOT NULL THEN {raw} END)"
