"""Node-local computation: exact per-group integers from DuckDB, then the uint64 vector.

For each aggregated numeric column the node computes, per group, exactly ``COUNT(col)``,
``S1 = ΣX`` and (for variances) ``S2 = ΣX²`` of the fixed-point values ``X``
(:mod:`federation.encoding`), with one DuckDB aggregate query (two, rarely three,
when the data needs it). Several formulations of that query give the same integers at
different speeds
(:mod:`federation.query.formulation`): the node runs the fastest tier of every column,
and when the data does not fit a tier (a value too large for it, or a DOUBLE sum that
does not certify as exact) it reruns with that column on a slower tier, down to the
reference formulation; on a DuckDB error a cheap probe finds the columns too wide for
their NARROW tier, and only when none is does every column fall to the reference.
Which tier ran changes the time only, never the vector (but for a CENTERED ``S2``,
within its certified bound of the exact one), and the rerun depends on nothing but
the node's own data. Only per-group aggregates are fetched, never rows.
The range checks (values outside the encodable range, NaN, ±inf) run in the same
query; a failing value is never echoed in an error (:mod:`federation.query.local_errors`
finds and names what failed).
"""

from __future__ import annotations

from collections.abc import Mapping

import duckdb
import numpy as np
import numpy.typing as npt

from federation.encoding import DIGIT_BITS, MAX_ROWS_PER_NODE, encode_integer
from federation.errors import DataError, SchemaMismatchError
from federation.query.bind import BoundQuery
from federation.query.centered import center_offset, centered_square
from federation.query.expr import columns_of
from federation.query.formulation import (
    CERTIFIED_LIMIT,
    Plan,
    Tier,
    build_plan,
    item_tiers,
    narrow_probes,
    render,
)
from federation.query.grouping_sets import RowReader, leading_columns
from federation.query.groups import key_columns
from federation.query.layout import FieldKind
from federation.query.local_errors import diagnose, evaluation_error, failed_check, unknown_group
from federation.query.plan import Centered
from federation.query.tiers import NARROW_LIMIT
from federation.query.where import render_predicate
from federation.schema import ColumnType

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

Rows = list[tuple[object, ...]]
Squares = dict[tuple[FieldKind, str | None], list[int | None]]
"""The CENTERED ``S2`` of each row of the local query, by quantity (None: not certified)."""
_HALF_DIGIT = 1 << (DIGIT_BITS - 1)
"""A value fits one balanced digit when ``-_HALF_DIGIT <= value < _HALF_DIGIT``."""


def local_sql(bound: BoundQuery, relation: str, tiers: tuple[Tier, ...] | None = None) -> str:
    """The DuckDB query a node runs first for ``bound`` over ``relation`` (for inspection).

    ``tiers`` (one per ``bound.aggregations``, then one per ``bound.products``) selects
    another formulation.
    """
    return render(bound, build_plan(bound, _start_tiers(bound, tiers, {})), relation)


def _start_tiers(
    bound: BoundQuery, tiers: tuple[Tier, ...] | None, offsets: Mapping[str, int]
) -> tuple[Tier, ...]:
    """``tiers`` checked against what each item allows; by default each one's fastest
    (CENTERED only for a column with an offset)."""
    options = item_tiers(bound)
    names = [a.column.name for a in bound.aggregations]
    names += [""] * (len(options) - len(names))  # the product columns: never CENTERED
    centered = (Tier.CENTERED, Tier.CENTERED_WIDE)
    if tiers is None:
        return tuple(_first_tier(o, offsets.get(names[i])) for i, o in enumerate(options))
    if len(tiers) != len(options) or any(t not in o for t, o in zip(tiers, options, strict=False)):
        raise ValueError(f"tiers {tiers} do not fit the query's columns, which allow {options}")
    if any(t in centered and names[i] not in offsets for i, t in enumerate(tiers)):
        raise ValueError("the CENTERED tiers need the column's center (centers=...)")
    return tiers


def _check_relation(bound: BoundQuery, con: duckdb.DuckDBPyConnection, relation: str) -> None:
    names = [c for key in bound.group_keys for c in key_columns(key.expression)]
    names += [a.column.name for a in bound.aggregations if a.expression is None]
    names += [c for a in bound.aggregations for c in a.reads]
    names += [c.name for p in bound.products for c in (p.left, p.right)]
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
    bound: BoundQuery,
    con: duckdb.DuckDBPyConnection,
    relation: str,
    *,
    tiers: tuple[Tier, ...] | None = None,
    typed: bool = False,
    centers: Mapping[str, float | None] | None = None,
    threads: int = 1,
) -> npt.NDArray[np.uint64]:
    """Compute this node's aggregate vector for ``bound``.

    Args:
        bound: The bound query (its fingerprint already checked by the caller).
        con: A DuckDB connection that can read ``relation``.
        relation: The (already safely quoted) name of a view or table with the node's
            rows, in the schema's declared column types.
        tiers: The tier to start from for each of ``bound.aggregations``, then each of
            ``bound.products``, among its :func:`~federation.query.formulation.item_tiers`
            (default: the fastest; ``reference_tiers(bound)``: the reference formulation).
            Any choice gives the same vector; tests and benchmarks use it to compare
            formulations.
        typed: True when the caller made ``relation`` itself with every declared
            column cast to its declared type (the node's datasets are): skips probing
            the relation's column types first.
        centers: The mean of each double column over the node's rows (any value near
            it will do): lets the variances use the CENTERED tier, whose ``S2`` is
            within a certified ``2**-43`` of each group's centred sum of squares
            (:mod:`federation.query.centered`). Without it every quantity is exact.
        threads: The DuckDB threads ``con`` runs with (the CENTERED bound grows with
            them).

    Returns:
        The uint64 vector of length ``bound.vector_length``.

    Raises:
        SchemaMismatchError: The relation lacks a column or stores it in another type.
        ValueOutOfRangeError: An aggregated value is outside its column's encodable range.
        DataError: NaN or ±inf in an aggregated double column, a categorical value
            outside its declared domain, or the WHERE clause failed to evaluate.
    """
    if not typed:
        _check_relation(bound, con, relation)
    offsets = _offsets_of(centers)
    start = _start_tiers(bound, tiers, offsets)
    plan, rows, squares = _run(bound, con, relation, start, offsets=offsets, threads=threads)
    return _encode(bound, plan, rows, squares)


def _first_tier(options: tuple[Tier, ...], offset: int | None) -> Tier:
    """An item's first tier: its fastest, but CENTERED only with an offset, and none
    that casts ``X`` to BIGINT (NARROW, CENTERED) when the column's mean on this node is
    itself beyond their range: some value is, and the query would only fail first."""
    if offset is None:
        return next(t for t in options if t not in (Tier.CENTERED, Tier.CENTERED_WIDE))
    if abs(offset) >= NARROW_LIMIT << 52:
        return next(t for t in options if t not in (Tier.CENTERED, Tier.NARROW))
    return options[0]


def _offsets_of(centers: Mapping[str, float | None] | None) -> dict[str, int]:
    """The CENTERED offsets of the columns with a usable center."""
    offsets = {}
    for name, center in (centers or {}).items():
        offset = center_offset(center)
        if offset is not None:
            offsets[name] = offset
    return offsets


def _run(
    bound: BoundQuery,
    con: duckdb.DuckDBPyConnection,
    relation: str,
    tiers: tuple[Tier, ...],
    *,
    offsets: dict[str, int],
    threads: int,
) -> tuple[Plan, Rows, Squares]:
    """Run the local query from ``tiers`` on, escalating until a formulation applies;
    also returns the CENTERED ``S2`` of every row (:data:`Squares`), certified."""
    while True:
        plan = build_plan(bound, tiers, offsets)
        ngroups = leading_columns(bound, plan.mode)
        try:
            rows = con.execute(render(bound, plan, relation)).fetchall()
        except duckdb.Error as exc:
            if any(t is not Tier.REFERENCE for t in tiers):
                # A value outside a fast tier's range, or a real error that the
                # reference formulation reproduces and reports.
                tiers = _escalate(bound, con, relation, tiers)
                continue
            diagnose(bound, con, relation)
            raise evaluation_error(exc) from None
        for index, error in plan.checks:
            if any(row[ngroups + index] for row in rows):
                diagnose(bound, con, relation)
                raise failed_check(bound, con, relation, plan.combined.get(index), error)
        failed = {i for index, i in plan.certified if not _certified(rows, ngroups + index)}
        squares = {
            key: [_centered(plan, key, c, row, ngroups, threads=threads) for row in rows]
            for key, c in plan.centered.items()
        }
        failed |= {plan.centered[key].item for key, values in squares.items() if None in values}
        if not failed:
            return plan, rows, squares
        tiers = tuple(
            _uncertified_tier(bound, i, t) if i in failed else t for i, t in enumerate(tiers)
        )


def _escalate(
    bound: BoundQuery, con: duckdb.DuckDBPyConnection, relation: str, tiers: tuple[Tier, ...]
) -> tuple[Tier, ...]:
    """The tiers to rerun with after the local query failed on ``tiers``.

    A cheap probe counts, per NARROW item, the values too wide for it: those items
    alone move to their next tier. When none is (the error came from elsewhere, or the
    probe fails too), every item moves to the reference tier, which reproduces and
    reports a real error.
    """
    reference = (Tier.REFERENCE,) * len(tiers)
    probes = narrow_probes(bound, tiers)
    if not probes:
        return reference
    sql = f"SELECT {', '.join(p for _, p in probes)} FROM {relation}"  # noqa: S608
    if bound.where is not None:
        sql += f" WHERE {render_predicate(bound.where)}"
    try:
        row = con.execute(sql).fetchall()[0]  # an ungrouped aggregate: exactly one row
    except duckdb.Error:
        return reference
    wide = {i for (i, _), count in zip(probes, row, strict=True) if count}
    if not wide:
        return reference
    return tuple(_wider_tier(bound, i, t) if i in wide else t for i, t in enumerate(tiers))


def _next_tier(bound: BoundQuery, i: int, tier: Tier) -> Tier:
    options = item_tiers(bound)[i]
    return options[options.index(tier) + 1]


def _wider_tier(bound: BoundQuery, i: int, tier: Tier) -> Tier:
    """The tier of item ``i`` after values too wide for ``tier`` (NARROW or CENTERED,
    which cast ``X`` to BIGINT): CENTERED_WIDE after CENTERED where the item has it,
    else REFERENCE."""
    if tier is Tier.CENTERED and Tier.CENTERED_WIDE in item_tiers(bound)[i]:
        return Tier.CENTERED_WIDE
    return Tier.REFERENCE


def _uncertified_tier(bound: BoundQuery, i: int, tier: Tier) -> Tier:
    """The tier of item ``i`` after a sum on ``tier`` did not certify: an exact one
    (NARROW after CENTERED; REFERENCE after CENTERED_WIDE, whose values were too wide
    for NARROW)."""
    if tier is Tier.CENTERED:
        return Tier.NARROW
    if tier is Tier.CENTERED_WIDE:
        return Tier.REFERENCE
    return _next_tier(bound, i, tier)


def _centered(
    plan: Plan,
    key: tuple[FieldKind, str | None],
    c: Centered,
    row: tuple[object, ...],
    lead: int,
    *,
    threads: int,
) -> int | None:
    """The CENTERED ``S2`` of one group, or None when it does not certify."""
    n = _quantity(plan.quantities[(FieldKind.COUNT, key[1])], row, lead)
    s1 = _quantity(plan.quantities[(FieldKind.SUM, key[1])], row, lead)
    return centered_square(n, s1, row[lead + c.aggregate], c.offset, threads)


def _quantity(parts: list[tuple[int, int]], row: tuple[object, ...], lead: int) -> int:
    """A quantity from its parts ``(aggregate index, shift)`` in one row."""
    return sum(_exact(row[lead + j]) << shift for j, shift in parts)


def _certified(rows: Rows, column: int) -> bool:
    """True when every group's DOUBLE sum in ``column`` is exact (see formulation)."""
    for row in rows:
        cell = row[column]
        if cell is None:
            continue
        if not isinstance(cell, float) or not 0.0 <= cell < CERTIFIED_LIMIT:
            return False
    return True


def _exact(cell: object) -> int:
    """An aggregate of the local query as an exact int (NULL sums of no rows are 0).

    DOUBLE cells are certified sums (:func:`_certified` has checked them): integers
    below 2**53, converted exactly.
    """
    if cell is None:
        return 0
    if isinstance(cell, float) and cell.is_integer():
        return int(cell)
    if not isinstance(cell, int):
        raise TypeError(f"local aggregate returned {type(cell).__name__}, expected an integer")
    return cell


def _offsets(
    bound: BoundQuery,
    lookups: list[dict[object, int]],
    keys: list[tuple[int, tuple[object, ...]]],
    indices: list[int],
) -> npt.NDArray[np.int64]:
    """The slot of each row (``indices``) within its grouping set, from the set's keys
    (``(key index, column of the rows' values)``, the last key varying fastest)."""
    offset = np.zeros(len(indices), dtype=np.int64)
    stride = 1
    for k, column in reversed(keys):
        key, lookup = bound.group_keys[k], lookups[k]
        null = len(key.labels)
        found = [null if column[i] is None else lookup.get(column[i], -1) for i in indices]
        position = np.array(found, dtype=np.int64)
        if (position < 0).any():
            raise unknown_group(bound, key)
        offset += position * stride
        stride *= null + 1
    return offset


def _encode(bound: BoundQuery, plan: Plan, rows: Rows, squares: Squares) -> npt.NDArray[np.uint64]:
    """The vector from the local query's rows: each row is one group of one grouping set
    (told by the columns after the keys when there are several,
    :class:`~federation.query.grouping_sets.RowReader`), written into the slots of every
    layout set equal to it. Fields of one digit read from one aggregate (row counts) are
    written a column at a time."""
    layout = bound.layout
    vector = np.zeros(layout.length, dtype=np.uint64)
    if not rows:
        return vector
    lead = leading_columns(bound, plan.mode)
    columns = list(zip(*rows, strict=True))
    lookups: list[dict[object, int]] = [
        {v: i for i, v in enumerate(key.labels)} for key in bound.group_keys
    ]
    width, starts = layout.slot_width, layout.set_starts
    total_rows = 0
    for sets, indices, at in RowReader(bound, plan.mode).partition(columns):
        keys = [(k, columns[c]) for k, c in zip(layout.sets[sets[0]], at, strict=True)]
        offset = _offsets(bound, lookups, keys, indices)
        bases = [(starts[s] + offset) * width for s in sets]
        for field in layout.fields:
            key = (field.kind, field.column)
            centered = squares.get(key)  # certified by _run
            parts = plan.quantities.get(key, [])
            if centered is None and field.digits == 1 and len(parts) == 1 and parts[0][1] == 0:
                column = columns[lead + parts[0][0]]
                values = np.array([_exact(column[i]) for i in indices], dtype=object)
                if field.kind is FieldKind.ROWS and sets[0] == 0:
                    total_rows += int(values.sum())  # every set holds every row: count one
                for value in values[(values < -_HALF_DIGIT) | (values >= _HALF_DIGIT)]:
                    encode_integer(int(value), 1)  # raises: it does not fit the field
                words = values.astype(np.int64).view(np.uint64)
                for base in bases:
                    vector[base + field.offset] = words
                continue
            for n, i in enumerate(indices):
                value = _quantity(parts, rows[i], lead) if centered is None else centered[i] or 0
                if field.kind is FieldKind.ROWS and sets[0] == 0:
                    total_rows += value
                if value:
                    _write(vector, bases, n, field.offset, encode_integer(value, field.digits))
    if total_rows > MAX_ROWS_PER_NODE:
        raise DataError(
            f"the node aggregates {total_rows} rows; at most {MAX_ROWS_PER_NODE} per node are "
            "supported: split the dataset across nodes"
        )
    return vector


def _write(
    vector: npt.NDArray[np.uint64],
    bases: list[npt.NDArray[np.int64]],
    n: int,
    offset: int,
    digits: list[int],
) -> None:
    """Write one group's ``digits`` at ``offset`` in the slot ``bases[.][n]`` of each set."""
    for base in bases:
        start = int(base[n]) + offset
        vector[start : start + len(digits)] = digits
