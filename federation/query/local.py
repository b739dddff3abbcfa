"""Node-local computation: one DuckDB aggregate query, exact integers, the uint64 vector.

For each aggregated numeric column the node computes, per group, exactly:
``COUNT(col)``, ``S1 = ΣX`` and (for variances) ``S2 = ΣX²`` of the fixed-point values
``X`` (:mod:`federation.encoding`). DuckDB multiplies 64-bit integers and sums them in
128-bit HUGEINT; ``X²`` does not fit 64 bits, so ``X`` is split into 31-bit limbs whose
pairwise products do (:class:`~federation.encoding.LimbPlan`), and Python recombines
the limb sums into exact big integers. Only per-group aggregates are fetched, never
rows. The range check (values outside the encodable range, NaN, ±inf) runs in the
same query; a failing value is never echoed in an error.
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import numpy as np
import numpy.typing as npt
from sqlglot import exp

from federation.encoding import MAX_ROWS_PER_NODE, FixedPointFormat, LimbPlan, encode_integer
from federation.errors import DataError, SchemaMismatchError
from federation.query.bind import BoundQuery
from federation.query.expr import columns_of
from federation.query.layout import FieldKind
from federation.query.where import render_predicate
from federation.schema import Column, ColumnType

__all__ = ["compute_local", "local_sql"]

_ACCEPTED_TYPES: dict[ColumnType, frozenset[str]] = {
    ColumnType.INTEGER: frozenset(
        {"tinyint", "smallint", "integer", "bigint", "hugeint"}
        | {"utinyint", "usmallint", "uinteger", "ubigint", "uhugeint"}
    ),
    ColumnType.DOUBLE: frozenset({"double", "float"}),
    ColumnType.CATEGORICAL: frozenset({"varchar", "enum"}),
    ColumnType.TEXT: frozenset({"varchar"}),
}
# DuckDB errors raised before any row is read: their messages cannot quote data values.
_SAFE_MESSAGE_ERRORS = (duckdb.BinderException, duckdb.CatalogException, duckdb.ParserException)

_P31 = "CAST(2147483648 AS DOUBLE)"
_P52 = "CAST(4503599627370496 AS DOUBLE)"
_P62 = "CAST(4611686018427387904 AS DOUBLE)"
_MASK31 = "2147483647"


def _q(name: str) -> str:
    """A quoted SQL identifier (names here are schema identifiers or '#'-prefixed aliases).

    DuckDB matches identifiers case-insensitively even when quoted, so generated aliases
    differ by more than case (and ``#`` never appears in a schema column name).
    """
    return '"' + name.replace('"', '""') + '"'


def _double_literal(value: float) -> str:
    """An exact DOUBLE literal (DuckDB's string-to-double cast rounds correctly)."""
    return f"CAST('{value!r}' AS DOUBLE)"


@dataclass(frozen=True)
class _Sum:
    """An aggregate of the local query contributing ``value << shift`` to a quantity."""

    sql: str
    shift: int = 0


@dataclass
class _Plan:
    """The generated SQL and which result columns form which quantity."""

    stages: list[list[tuple[str, str]]]
    aggregates: list[str]
    quantities: dict[tuple[FieldKind, str | None], list[tuple[int, int]]]
    checks: list[tuple[int, Column, FixedPointFormat | None]]

    def add(self, key: tuple[FieldKind, str | None], parts: list[_Sum]) -> None:
        for part in parts:
            self.quantities.setdefault(key, []).append((len(self.aggregates), part.shift))
            self.aggregates.append(part.sql)


def _range_condition(raw: str, fmt: FixedPointFormat) -> str:
    if fmt.column_type is ColumnType.INTEGER:
        return f"{raw} BETWEEN {int(fmt.lower)} AND {int(fmt.upper)}"
    lo, hi = _double_literal(float(fmt.lower)), _double_literal(float(fmt.upper))
    return f"{raw} BETWEEN {lo} AND {hi}"


def _numeric_parts(plan: _Plan, i: int, fmt: FixedPointFormat, squares: bool) -> None:
    """Add the limb stages and the S1/S2 aggregates of one numeric column.

    Limb plans (all products fit BIGINT; DuckDB sums BIGINT into HUGEINT):

    * ONE (``|X| <= 2**31``): ``S2 = Σ X*X``.
    * TWO (``|X| <= 2**62``, BIGINT): ``a = X >> 31`` in ``[-2**31, 2**31]``,
      ``c = X & (2**31-1)``; ``X² = a²·2**62 + 2ac·2**31 + c²``.
    * THREE (``|X| <= 2**93``, doubles only): ``d = round(x·2**52)`` is an integer-valued
      double equal to ``X``. ``h = round(d / 2**62)`` (``|h| <= 2**31``) and
      ``r = d - h·2**62`` are exact: ``|r| <= 2**61`` and ``r`` is a multiple of
      ``ulp(d)`` (when ``|d| >= 2**61``, ``ulp(d) >= 2**9``), so ``r`` has at most 53
      significant bits. Likewise ``m = round(r / 2**31)`` (``|m| <= 2**30``) and
      ``l = r - m·2**31`` (``|l| <= 2**30``) are exact integers below 2**53.
      ``X² = h²·2**124 + 2hm·2**93 + (m² + 2hl)·2**62 + 2ml·2**31 + l²``, every product
      (and ``m² + 2hl <= 2**60 + 2**62``) below 2**63. When only ``S1`` is needed, the
      cheaper split ``X = t·2**52 + round((x - t)·2**52)`` with ``t = trunc(x)`` is used:
      ``x - t`` is exact, and for ``|x| >= 1`` the product is already an integer, so it
      rounds exactly as ``round(x·2**52)`` does (``|t| < 2**41``, the rest ``< 2**52``).
    """
    raw, name = _q(fmt.column), fmt.column
    s1, s2 = (FieldKind.SUM, name), (FieldKind.SUM_SQUARES, name)
    if fmt.column_type is ColumnType.INTEGER:
        value = f"CAST({raw} AS BIGINT)"
    else:
        value = f"round(CAST({raw} AS DOUBLE) * {_P52})"
    limbs = fmt.limbs
    if limbs is LimbPlan.THREE and not squares:
        # S1 only: X = t·2**52 + round((x - t)·2**52) with t = trunc(x) (see docstring).
        t = _q(f"#t{i}")
        plan.stages[0].append((f"#t{i}", f"trunc(CAST({raw} AS DOUBLE))"))
        plan.stages[1] += [
            (f"#tb{i}", f"CAST({t} AS BIGINT)"),
            (f"#fb{i}", f"CAST(round((CAST({_q(f'#x{i}')} AS DOUBLE) - {t}) * {_P52}) AS BIGINT)"),
        ]
        tb, fb = _q(f"#tb{i}"), _q(f"#fb{i}")
        plan.add((FieldKind.COUNT, name), [_Sum(f"count({tb})")])
        plan.add(s1, [_Sum(f"sum({tb})", 52), _Sum(f"sum({fb})")])
        return
    if limbs is LimbPlan.THREE:
        d, h, r, m = (_q(f"#{k}{i}") for k in "dhrm")
        plan.stages[0].append((f"#d{i}", value))
        plan.stages[1].append((f"#h{i}", f"round({d} / {_P62})"))
        plan.stages[2].append((f"#r{i}", f"{d} - {h} * {_P62}"))
        plan.stages[3].append((f"#m{i}", f"round({r} / {_P31})"))
        plan.stages[4] += [
            (f"#hb{i}", f"CAST({h} AS BIGINT)"),
            (f"#mb{i}", f"CAST({m} AS BIGINT)"),
            (f"#lb{i}", f"CAST({r} - {m} * {_P31} AS BIGINT)"),
        ]
        hh, mm, ll = _q(f"#hb{i}"), _q(f"#mb{i}"), _q(f"#lb{i}")
        plan.add((FieldKind.COUNT, name), [_Sum(f"count({hh})")])
        plan.add(s1, [_Sum(f"sum({hh})", 62), _Sum(f"sum({mm})", 31), _Sum(f"sum({ll})")])
        plan.add(
            s2,
            [
                _Sum(f"sum({hh} * {hh})", 124),
                _Sum(f"sum({hh} * {mm})", 94),
                _Sum(f"sum({mm} * {mm} + 2 * {hh} * {ll})", 62),
                _Sum(f"sum({mm} * {ll})", 32),
                _Sum(f"sum({ll} * {ll})"),
            ],
        )
        return
    v = _q(f"#v{i}")
    if fmt.column_type is ColumnType.DOUBLE:
        value = f"CAST({value} AS BIGINT)"
    plan.stages[0].append((f"#v{i}", value))
    plan.add((FieldKind.COUNT, name), [_Sum(f"count({v})")])
    plan.add(s1, [_Sum(f"sum({v})")])
    if not squares:
        return
    if limbs is LimbPlan.ONE:
        plan.add(s2, [_Sum(f"sum({v} * {v})")])
        return
    a, c = _q(f"#a{i}"), _q(f"#c{i}")
    plan.stages[1] += [(f"#a{i}", f"{v} >> 31"), (f"#c{i}", f"{v} & {_MASK31}")]
    plan.add(
        s2, [_Sum(f"sum({a} * {a})", 62), _Sum(f"sum({a} * {c})", 32), _Sum(f"sum({c} * {c})")]
    )


def _build_plan(bound: BoundQuery) -> _Plan:
    plan = _Plan(stages=[[] for _ in range(5)], aggregates=[], quantities={}, checks=[])
    for k, col in enumerate(bound.group_columns):
        plan.stages[0].append((f"#g{k}", _q(col.name)))
    plan.add((FieldKind.ROWS, None), [_Sum("count(*)")])
    for i, agg in enumerate(bound.aggregations):
        raw = _q(f"#x{i}")
        plan.stages[0].append((f"#x{i}", _q(agg.column.name)))
        fmt = agg.format
        if fmt is not None and agg.need_sum:
            _numeric_parts(plan, i, fmt, agg.need_squares)
            plan.checks.append((len(plan.aggregates), agg.column, fmt))
            plan.aggregates.append(f"count_if(NOT ({_range_condition(raw, fmt)}))")
            continue
        plan.add((FieldKind.COUNT, agg.column.name), [_Sum(f"count({raw})")])
        if agg.column.type is ColumnType.CATEGORICAL:
            domain = ", ".join(_string_literal(v) for v in agg.column.domain)
            plan.checks.append((len(plan.aggregates), agg.column, None))
            plan.aggregates.append(f"count_if(NOT ({raw} IN ({domain})))")
    return plan


def _string_literal(value: str) -> str:
    return exp.Literal.string(value).sql(dialect="duckdb")


def local_sql(bound: BoundQuery, relation: str) -> str:
    """The DuckDB query a node runs for ``bound`` over ``relation`` (for inspection)."""
    return _render(bound, _build_plan(bound), relation)


def _render(bound: BoundQuery, plan: _Plan, relation: str) -> str:
    base_items = ", ".join(f"{expr} AS {_q(alias)}" for alias, expr in plan.stages[0]) or "1"
    # Every piece is generated here from the bound query: quoted identifiers, literals
    # from the schema, the predicate rendered by sqlglot. ``relation`` is trusted.
    sql = f"SELECT {base_items} FROM {relation}"  # noqa: S608
    if bound.where is not None:
        sql += f" WHERE {render_predicate(bound.where)}"
    for stage in plan.stages[1:]:
        if stage:
            items = ", ".join(f"{expr} AS {_q(alias)}" for alias, expr in stage)
            sql = f"SELECT *, {items} FROM ({sql})"  # noqa: S608
    keys = [_q(f"#g{k}") for k in range(len(bound.group_columns))]
    outer = f"SELECT {', '.join([*keys, *plan.aggregates])} FROM ({sql})"  # noqa: S608
    if keys:
        outer += f" GROUP BY {', '.join(keys)}"
    return outer


def _check_relation(bound: BoundQuery, con: duckdb.DuckDBPyConnection, relation: str) -> None:
    names = [c.name for c in bound.group_columns] + [a.column.name for a in bound.aggregations]
    if bound.where is not None:
        names += columns_of(bound.where)
    try:
        rel = con.sql(f"SELECT * FROM {relation} LIMIT 0")  # noqa: S608 - relation is trusted
    except duckdb.Error as exc:
        raise DataError(f"the node cannot read its dataset relation {relation}: {exc}") from None
    types = {name.lower(): t for name, t in zip(rel.columns, rel.types, strict=True)}
    for name in dict.fromkeys(names):
        col = bound.schema.column(name)
        found = types.get(col.name.lower())
        if found is None:
            raise SchemaMismatchError(
                f"the node's relation for dataset {bound.dataset!r} has no column {col.name!r} "
                "declared in its schema; fix the node's dataset configuration"
            )
        if found.id not in _ACCEPTED_TYPES[col.type]:
            raise SchemaMismatchError(
                f"column {col.name!r} is declared {col.type.value} but the node's relation "
                f"stores it as {found}; expected one of "
                f"{sorted(t.upper() for t in _ACCEPTED_TYPES[col.type])}: cast it in the view"
            )


def compute_local(
    bound: BoundQuery, con: duckdb.DuckDBPyConnection, relation: str
) -> npt.NDArray[np.uint64]:
    """Compute this node's aggregate vector for ``bound``.

    Args:
        bound: The bound query (its fingerprint already checked by the caller).
        con: A DuckDB connection that can read ``relation``.
        relation: The (already safely quoted) name of a view or table with the node's
            rows, in the schema's declared column types.

    Returns:
        The uint64 vector of length ``bound.vector_length``.

    Raises:
        SchemaMismatchError: The relation lacks a column or stores it in another type.
        ValueOutOfRangeError: An aggregated value is outside its column's encodable range.
        DataError: NaN or ±inf in an aggregated double column, a categorical value
            outside its declared domain, or the WHERE clause failed to evaluate.
    """
    _check_relation(bound, con, relation)
    plan = _build_plan(bound)
    try:
        rows = con.execute(_render(bound, plan, relation)).fetchall()
    except duckdb.Error as exc:
        _diagnose(bound, con, relation)
        raise _evaluation_error(exc) from None
    ngroups = len(bound.group_columns)
    for index, column, fmt in plan.checks:
        if any(row[ngroups + index] for row in rows):
            _diagnose(bound, con, relation)
            raise fmt.out_of_range_error() if fmt is not None else _domain_error(column)
    return _encode(bound, plan, rows)


def _evaluation_error(exc: duckdb.Error) -> DataError:
    if isinstance(exc, _SAFE_MESSAGE_ERRORS):  # about the query or relation, not the data
        return DataError(f"the node's DuckDB could not run the local query: {exc}")
    return DataError(
        f"evaluating the query on this node's data failed (DuckDB {type(exc).__name__}), "
        "e.g. a division by zero or an integer overflow in the WHERE clause; the DuckDB "
        "message is withheld because it may quote data values"
    )


def _diagnose(bound: BoundQuery, con: duckdb.DuckDBPyConnection, relation: str) -> None:
    """Find which column made the local query fail or flag a value; raise its error."""
    probes: list[tuple[str, DataError]] = []
    for agg in bound.aggregations:
        raw, col, fmt = _q(agg.column.name), agg.column, agg.format
        if fmt is not None and agg.need_sum:
            if col.type is ColumnType.DOUBLE:
                probes.append(
                    (
                        f"count_if(NOT isfinite({raw}))",
                        DataError(
                            f"column {col.name!r} holds NaN or infinite values, which cannot "
                            "be aggregated; clean the data or filter them out with WHERE"
                        ),
                    )
                )
            probes.append(
                (f"count_if(NOT ({_range_condition(raw, fmt)}))", fmt.out_of_range_error())
            )
        elif col.type is ColumnType.CATEGORICAL:
            domain = ", ".join(_string_literal(v) for v in col.domain)
            probes.append((f"count_if(NOT ({raw} IN ({domain})))", _domain_error(col)))
    for col in bound.group_columns:
        domain = ", ".join(_string_literal(v) for v in col.domain)
        probes.append((f"count_if(NOT ({_q(col.name)} IN ({domain})))", _domain_error(col)))
    if not probes:
        return
    sql = f"SELECT {', '.join(p for p, _ in probes)} FROM {relation}"  # noqa: S608
    if bound.where is not None:
        sql += f" WHERE {render_predicate(bound.where)}"
    try:
        row = con.execute(sql).fetchall()[0]  # an ungrouped aggregate: exactly one row
    except duckdb.Error as exc:
        raise _evaluation_error(exc) from None
    for count, (_, error) in zip(row, probes, strict=True):
        if count:
            raise error


def _domain_error(col: Column) -> DataError:
    return DataError(
        f"categorical column {col.name!r} holds values outside its declared domain "
        f"({len(col.domain)} values); add them to the schema's domain or clean the data"
    )


def _exact(cell: object) -> int:
    """An aggregate of the local query as an exact int (NULL sums of no rows are 0)."""
    if cell is None:
        return 0
    if not isinstance(cell, int):
        raise TypeError(f"local aggregate returned {type(cell).__name__}, expected an integer")
    return cell


def _encode(
    bound: BoundQuery, plan: _Plan, rows: list[tuple[object, ...]]
) -> npt.NDArray[np.uint64]:
    layout = bound.layout
    vector = np.zeros(layout.length, dtype=np.uint64)
    ngroups = len(bound.group_columns)
    lookups = [{v: i for i, v in enumerate(c.domain)} for c in bound.group_columns]
    total_rows = 0
    for row in rows:
        positions = []
        for k, col in enumerate(bound.group_columns):
            key = row[k]
            if key is None:
                positions.append(len(col.domain))
            elif key in lookups[k]:
                positions.append(lookups[k][key])
            else:
                raise _domain_error(col)
        base = layout.slot_index(tuple(positions)) * layout.slot_width
        for field in layout.fields:
            parts = plan.quantities[(field.kind, field.column)]
            value = sum(_exact(row[ngroups + j]) << shift for j, shift in parts)
            if field.kind is FieldKind.ROWS:
                total_rows += value
            if value:
                digits = encode_integer(value, field.digits)
                vector[base + field.offset : base + field.offset + field.digits] = digits
    if total_rows > MAX_ROWS_PER_NODE:
        raise DataError(
            f"the node aggregates {total_rows} rows; at most {MAX_ROWS_PER_NODE} per node are "
            "supported: split the dataset across nodes"
        )
    return vector
